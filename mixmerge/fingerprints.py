"""Content fingerprints: of JSON-able requests, and of a model folder's weights (for caching)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mixmerge.artifacts import PROVENANCE_FILE, RESULTS_FILE
from mixmerge.io import write_json_atomic

# What a model folder's identity is made of: weights, configs and tokenizer files. Provenance and
# evaluation results are written into the folder later and must not change its fingerprint.
_MODEL_SUFFIXES = {".safetensors", ".bin", ".gguf", ".json", ".model", ".txt", ".jinja"}
_NOT_MODEL = {PROVENANCE_FILE, RESULTS_FILE}


def sha256_json(data: Any) -> str:
    """A stable hash of JSON-able data (key order does not matter)."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def model_fingerprint(model: str | Path, cache_dir: str | Path | None = None) -> str:
    """A hash of a model folder's weight, config and tokenizer files, by content.

    Hashing a 8B checkpoint takes a while, so digests are remembered per file (keyed by path, size
    and modification time) under `cache_dir/fingerprints`. A hub id (not a folder) is its own
    fingerprint: the hub revision is what transformers will load.
    """
    folder = Path(str(model)).expanduser()
    if not folder.is_dir():
        return sha256_json({"hub_id": str(model)})
    folder = folder.resolve()
    index_path = (
        Path(cache_dir) / "fingerprints" / f"{sha256_json(str(folder))[:24]}.json"
        if cache_dir
        else None
    )
    index: dict[str, Any] = {}
    if index_path and index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            index = {}
    digests, changed = {}, False
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix not in _MODEL_SUFFIXES or path.name in _NOT_MODEL:
            continue
        stat = path.stat()
        known = index.get(path.name)
        if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
            digests[path.name] = known["sha256"]
            continue
        digests[path.name] = file_sha256(path)
        index[path.name] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": digests[path.name],
        }
        changed = True
    if index_path and changed:
        write_json_atomic(index_path, index)
    return sha256_json(digests)
