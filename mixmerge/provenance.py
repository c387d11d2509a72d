"""Provenance: every trained or merged model folder carries `mixmerge.json` saying where it came from."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import mixmerge
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
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }
    return write_json_atomic(Path(model_dir) / PROVENANCE_FILE, record)
