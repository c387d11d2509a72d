"""Which model is evaluated, and against which baseline (by default, found through provenance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixmerge.errors import MixmergeError
from mixmerge.modeling import resolve_model, resolve_model_ref
from mixmerge.provenance import read_provenance

BASE = "base"  # `model_ref=base` / `baseline=base`: the model the `model` config group selects


@dataclass
class ModelRef:
    """How a model was named, where it lives, and (for a baseline) how it was chosen."""

    reference: str
    path: str
    how: str = "given"
    lineage: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "path": self.path,
            "how": self.how,
            "lineage": self.lineage,
        }


def resolve_ref(ref: str, cfg: DictConfig, key: str) -> ModelRef:
    """A trained/merged model's name under paths.models_dir, a path, or `base` (the `model` group)."""
    if ref == BASE:
        return ModelRef(
            f"{BASE} ({cfg.model.name})", resolve_model(cfg.model, cfg.paths.models_dir), how=BASE
        )
    return ModelRef(ref, str(resolve_model_ref(ref, cfg.paths.models_dir, key=key)))


def _parent(provenance: dict[str, Any]) -> dict[str, Any] | None:
    """The model a trained or merged model descends from: `parent` for training; for merges the
    merge `base`, or else the first of `parents`."""
    if provenance.get("kind") == "merge":
        return provenance.get("base") or next(iter(provenance.get("parents") or []), None)
    return provenance.get("parent")


def find_baseline(model: ModelRef) -> ModelRef:
    """Follow provenance from `model` up to the root (a folder without provenance, or a hub id).

    A model without provenance is its own baseline.
    """
    path, reference, lineage = model.path, model.reference, [model.path]
    while True:
        provenance = read_provenance(path) if Path(path).is_dir() else None
        parent = _parent(provenance) if provenance else None
        if not parent:
            return ModelRef(
                reference, path, how="self" if path == model.path else "provenance", lineage=lineage
            )
        parent_path = str(parent.get("path") or "")
        local = Path(parent_path).expanduser()
        looks_local = parent_path.startswith(("/", ".", "~")) or local.exists()
        if not parent_path or (looks_local and not local.is_dir()):
            raise MixmergeError(
                f"baseline: {path} descends from {parent_path or 'an unnamed model'} (its {Path(path) / 'mixmerge.json'}), "
                "which is not a folder here; pass baseline=<name or path>"
            )
        if parent_path in lineage:
            raise MixmergeError(
                f"baseline: provenance of {path} loops back to {parent_path}; pass baseline=<name or path>"
            )
        path, reference = parent_path, str(parent.get("reference") or parent_path)
        lineage.append(path)


def resolve_baseline(baseline: str | None, model: ModelRef, cfg: DictConfig) -> ModelRef:
    """`baseline=null` follows the evaluated model's provenance; otherwise like the model."""
    if baseline is None:
        return find_baseline(model)
    return resolve_ref(str(baseline), cfg, key="baseline")
