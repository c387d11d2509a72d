"""Provenance: every trained or merged model folder carries `mixmerge.json` saying where it came
from (its shape: `mixmerge.artifacts.Provenance`)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import mixmerge
from mixmerge.artifacts import (
    PROVENANCE_FILE,
    Provenance,
    load_provenance,
    validate,
    write_artifact,
)
from mixmerge.errors import MixmergeError

__all__ = [
    "PROVENANCE_FILE",
    "finished_output",
    "parent_entry",
    "read_provenance",
    "write_provenance",
]


def read_provenance(model_dir: str | Path) -> dict[str, Any] | None:
    """A model folder's checked provenance as plain data, or None for a model mixmerge did not
    make (`mixmerge.artifacts.load_provenance` gives the typed record)."""
    provenance = load_provenance(model_dir)
    return None if provenance is None else provenance.as_dict()


def parent_entry(reference: str, resolved: str | Path) -> dict[str, Any]:
    """Describe a parent model: how it was named, where it lives, and its own provenance."""
    return {
        "reference": reference,
        "path": str(resolved),
        "provenance": read_provenance(resolved) if Path(str(resolved)).is_dir() else None,
    }


def write_provenance(model_dir: str | Path, kind: str, **fields: Any) -> Path:
    """Write `mixmerge.json` into a model folder (kind: 'train' or 'merge')."""
    record = {
        "kind": kind,
        "mixmerge_version": mixmerge.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **fields,
    }
    path = Path(model_dir) / PROVENANCE_FILE
    return write_artifact(path, validate(Provenance, record, path))


def finished_output(
    out_dir: Path, output_name: str, overwrite: bool, skip_existing: bool = False
) -> dict[str, Any] | None:
    """Decide what to do when a run's output folder already exists.

    Returns the finished output's provenance when `skip_existing` (the caller then does nothing),
    None when the run should go ahead; raises when a finished output would be overwritten.
    """
    if not out_dir.exists():
        return None
    provenance = read_provenance(out_dir)
    if skip_existing and provenance is not None:
        return provenance
    if overwrite:
        return None
    raise MixmergeError(
        f"output_name={output_name}: {out_dir} already holds a finished model "
        "(pass overwrite=true to replace it, skip_existing=true to keep it, or choose another output_name)"
    )
