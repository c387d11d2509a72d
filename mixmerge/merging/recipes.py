"""Recipes: which trained models to merge, with which weights, and from which common base.

- objective: `recipe.general` (the 0%-safety model) and `recipe.safety` (the 100%-safety model),
  weighted 1−w and w by `merge.safety_weight`;
- language: `recipe.models`, monolingual models, equal weights (1/n) unless `recipe.weights`.

`recipe.base` is the model the parents were fine-tuned from; null means "find it through the
parents' provenance" (their `parent.path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from mixmerge.artifacts import ModelRef, Weight, load_provenance
from mixmerge.errors import MixmergeError
from mixmerge.merging.weights import check_weight, complement, show
from mixmerge.modeling import is_model_dir, resolve_model_ref


@dataclass(frozen=True)
class MergeInput:
    model: ModelRef
    weight: Weight


@dataclass(frozen=True)
class Recipe:
    name: str
    inputs: list[MergeInput]
    weight_key: str  # the key the weights came from, for error messages
    safety_weight: Weight | None  # objective recipe only
    slerp_t: Weight | None  # interpolation from inputs[0] to inputs[1]; two models only


def resolve_recipe(recipe: DictConfig, merge: DictConfig, models_dir: str | Path) -> Recipe:
    """Resolve the recipe's models to folders and their weights; bad input raises MixmergeError."""
    if recipe.get("general") is not None or recipe.get("safety") is not None:
        return _objective(recipe, merge, models_dir)
    if recipe.get("models") is not None:
        return _language(recipe, models_dir)
    raise MixmergeError(
        f"recipe={recipe.get('name')}: expected recipe.general and recipe.safety (objective) "
        "or a list recipe.models (language)"
    )


def model_ref(ref: Any, key: str, models_dir: str | Path) -> ModelRef:
    """A model named at `key`: a trained model's name under `models_dir`, or a path."""
    if ref is None or str(ref).strip() == "":
        raise MixmergeError(f"{key}: expected a trained model's name or a path")
    return ModelRef(str(ref), str(resolve_model_ref(str(ref), models_dir, key=key)), key=key)


def _objective(recipe: DictConfig, merge: DictConfig, models_dir: str | Path) -> Recipe:
    general = model_ref(recipe.get("general"), "recipe.general", models_dir)
    safety = model_ref(recipe.get("safety"), "recipe.safety", models_dir)
    w = check_weight(merge.get("safety_weight"), "merge.safety_weight")
    return Recipe(
        name=str(recipe.name),
        inputs=[MergeInput(general, complement(w)), MergeInput(safety, w)],
        weight_key="merge.safety_weight",
        safety_weight=w,
        slerp_t=w,
    )


def _language(recipe: DictConfig, models_dir: str | Path) -> Recipe:
    refs = recipe.models
    if not isinstance(refs, ListConfig) or len(refs) == 0:
        raise MixmergeError(
            f"recipe.models={show(refs)}: expected a non-empty list of trained models"
        )
    models = [model_ref(ref, f"recipe.models[{i}]", models_dir) for i, ref in enumerate(refs)]
    raw = recipe.get("weights")
    if raw is None:
        weights: list[Weight] = [1.0 / len(models)] * len(models)
    else:
        if not isinstance(raw, ListConfig) or len(raw) != len(models):
            raise MixmergeError(
                f"recipe.weights={show(raw)}: expected null (equal) or one weight per model ({len(models)})"
            )
        weights = [check_weight(w, f"recipe.weights[{i}]") for i, w in enumerate(raw)]
    slerp_t = None
    if len(models) == 2:
        a, b = weights
        if isinstance(a, list) or isinstance(b, list):
            slerp_t = b  # a gradient names the second model's share directly
        else:
            if a + b == 0:
                raise MixmergeError(f"recipe.weights={show(raw)}: the weights sum to 0")
            slerp_t = b / (a + b)
    return Recipe(
        name=str(recipe.name),
        inputs=[MergeInput(m, w) for m, w in zip(models, weights, strict=True)],
        weight_key="recipe.weights",
        safety_weight=None,
        slerp_t=slerp_t,
    )


def find_base(
    recipe: DictConfig, inputs: list[MergeInput], models_dir: str | Path
) -> tuple[ModelRef | None, str]:
    """The common base of the parents: `recipe.base`, or the parent their provenance names.

    Returns (base or None, why none was found).
    """
    if recipe.get("base") is not None:
        return model_ref(recipe.base, "recipe.base", models_dir), ""
    parents = []
    for item in inputs:
        provenance = load_provenance(item.model.folder)
        parent = provenance.parent if provenance else None
        if parent is None or not parent.path:
            return (
                None,
                f"{item.model.key}={item.model.reference} has no provenance naming its parent",
            )
        parents.append(parent)
    paths = {Path(p.path).resolve() for p in parents}
    if len(paths) != 1:
        listed = ", ".join(f"{i.model.key}: {p.path}" for i, p in zip(inputs, parents, strict=True))
        return None, f"the parents were fine-tuned from different models ({listed})"
    path = paths.pop()
    if not is_model_dir(path):
        return None, f"their common parent {path} is no longer a model folder"
    return ModelRef(str(parents[0].reference or path), str(path), key="recipe.base"), ""
