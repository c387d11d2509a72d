"""Save a trained policy as a plain Hugging Face folder (LoRA merged by default), atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixmerge.io import atomic_dir
from mixmerge.provenance import write_provenance


def export_model(
    model: Any,
    tokenizer: Any,
    dest: str | Path,
    provenance: dict[str, Any],
    merge_lora: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write `model` + `tokenizer` + `mixmerge.json` to `dest`; nothing appears there unless it all succeeds."""
    dest = Path(dest)
    if hasattr(model, "merge_and_unload") and merge_lora:
        model = model.merge_and_unload()
    with atomic_dir(dest, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_provenance(tmp, **provenance)
    return dest
