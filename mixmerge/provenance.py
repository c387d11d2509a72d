"""Provenance: every trained or merged model folder carries `mixmerge.json` saying where it came from."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import mixmerge
from mixmerge.errors import MixmergeError
from mixmerge.io import write_json_atomic

PROVENANCE_FILE = "mixmerge.json"


def read_provenance(model_dir: str | Path) -> dict[str, Any] | None:
    """The provenance of a model folder, or None for a model mixmerge did not make."""
    path = Path(model_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


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
    return write_json_atomic(Path(model_dir) / PROVENANCE_FILE, record)


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
