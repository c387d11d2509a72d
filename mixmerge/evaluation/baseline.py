"""Which model is evaluated, and against which baseline (by default, found through provenance by
the lineage walker, mixmerge.lineage)."""

from __future__ import annotations

from omegaconf import DictConfig

from mixmerge.artifacts import ModelRef
from mixmerge.lineage import find_baseline
from mixmerge.modeling import resolve_model, resolve_model_ref

BASE = "base"  # `model_ref=base` / `baseline=base`: the model the `model` config group selects


def resolve_ref(ref: str, cfg: DictConfig, key: str) -> ModelRef:
    """A trained/merged model's name under paths.models_dir, a path, or `base` (the `model` group)."""
    if ref == BASE:
        return ModelRef(
            f"{BASE} ({cfg.model.name})", resolve_model(cfg.model, cfg.paths.models_dir), how=BASE
        )
    return ModelRef(ref, str(resolve_model_ref(ref, cfg.paths.models_dir, key=key)))


def resolve_baseline(baseline: str | None, model: ModelRef, cfg: DictConfig) -> ModelRef:
    """`baseline=null` follows the evaluated model's provenance; otherwise like the model."""
    if baseline is None:
        return find_baseline(model)
    return resolve_ref(str(baseline), cfg, key="baseline")
