"""The mergekit configuration for a recipe and a method, and the YAML written next to the merge.

How `merge.safety_weight` (w) maps to mergekit's parameters (objective recipe) is said per method
in mixmerge.merging.methods; in short:
- linear: models general (weight 1−w) and safety (weight w), normalize: true;
- slerp: base_model general, models general + safety, t = w (t=0 is mergekit's base model);
- nuslerp: models general (weight 1−w) and safety (weight w), so t = w; the common parent as
  base_model only with `merge.task_vectors=true`;
- task-vector methods (ties, dare_ties, task_arithmetic, dare_linear, breadcrumbs_ties, della):
  base_model = the common parent, models general (weight 1−w) and safety (weight w), plus their
  own parameters (density, lambda, epsilon, gamma, …) from the `merge` group;
- model_stock: no weights at all (the ratio comes from the task vectors' angle); the safety
  weight is recorded but does not change the merge.
A list w is a per-layer gradient, passed on as a list (1−w element by element for the general model).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixmerge.artifacts import ModelRef
from mixmerge.errors import MixmergeError
from mixmerge.merging.methods import COMMON_KEYS, Method, check_params, method
from mixmerge.merging.recipes import Recipe
from mixmerge.merging.weights import is_gradient, show

# mixmerge's own switches in a method's parameter list, never passed to mergekit.
MIXMERGE_PARAMS = frozenset({"task_vectors"})


def method_spec(name: str) -> Method:
    """The registry entry of a method (mixmerge.merging.methods); unknown names are one line."""
    return method(name)


def uses_base(spec: Method, merge: DictConfig) -> bool:
    """Whether mergekit gets the common parent as its base model."""
    return spec.base == "required" or (spec.base == "optional" and bool(merge.get("task_vectors")))


def check_merge_keys(spec: Method, merge: DictConfig) -> None:
    """No `merge.*` key the method does not know (a typo or another method's parameter)."""
    known = COMMON_KEYS | {p.name for p in spec.params}
    unknown = sorted(set(merge) - known)
    if unknown:
        params = ", ".join(p.name for p in spec.params) or "none"
        raise MixmergeError(
            f"merge.{unknown[0]}: not a parameter of merge={spec.name} (its parameters: {params})"
        )
    check_params(spec, {k: _plain(merge[k]) for k in merge if merge.get(k) is not None})


def check_recipe_fits(method: str, recipe: Recipe) -> None:
    """Model count and gradient rules that depend on both the method and the recipe."""
    spec = method_spec(method)
    count = len(recipe.inputs)
    if spec.models is not None and count != spec.models:
        raise MixmergeError(
            f"merge={method}: merges exactly {spec.models} models; recipe={recipe.name} names {count}"
        )
    if count < 2:
        raise MixmergeError(f"recipe={recipe.name}: names {count} model; a merge needs at least 2")
    if not spec.gradient and spec.has_safety_weight:
        for item in recipe.inputs:
            if is_gradient(item.weight):
                value = recipe.safety_weight if recipe.safety_weight is not None else item.weight
                raise MixmergeError(
                    f"{recipe.weight_key}={show(value)}: merge={method} takes one number, not a per-layer "
                    f"gradient (use slerp, ties, dare_ties or task_arithmetic for a list)"
                )


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def build_mergekit_config(
    method: str,
    merge: DictConfig,
    recipe: Recipe,
    base: ModelRef | None,
    tokenizer_source: str | None,
) -> dict[str, Any]:
    """The mergekit configuration (a plain dict, as `mergekit-yaml` would read it)."""
    spec = method_spec(method)
    config: dict[str, Any] = {"merge_method": spec.mergekit}
    passed = [p for p in spec.params if p.name not in MIXMERGE_PARAMS]
    if method == "slerp":
        first, second = (item.model for item in recipe.inputs)
        # mergekit's SLERP interpolates from its base model (t=0) to the other model (t=1).
        config["base_model"] = str(first.path)
        config["models"] = [{"model": str(first.path)}, {"model": str(second.path)}]
        config["parameters"] = {"t": recipe.slerp_t}
    else:
        extra = {
            p.name: _plain(merge[p.name])
            for p in passed
            if p.scope == "model" and merge.get(p.name) is not None
        }
        config["models"] = []
        for item in recipe.inputs:
            # model_stock takes no weights: its ratio comes from the angle between task vectors.
            params = {**({"weight": item.weight} if spec.has_safety_weight else {}), **extra}
            entry: dict[str, Any] = {"model": str(item.model.path)}
            if params:
                entry["parameters"] = params
            config["models"].append(entry)
        if uses_base(spec, merge):
            if base is None:
                raise MixmergeError(f"merge={method}: needs a base model (recipe.base)")
            config["base_model"] = str(base.path)
        params = {
            p.name: _plain(merge[p.name])
            for p in passed
            if p.scope == "shared" and merge.get(p.name) is not None
        }
        if params:
            config["parameters"] = params
    for key in ("dtype", "out_dtype"):
        if merge.get(key):
            config[key] = str(merge[key])
    if tokenizer_source:
        config["tokenizer_source"] = tokenizer_source
    return config


def config_yaml(config: Any, header: str) -> str:
    """The configuration as mergekit writes it (its own dumper), behind a comment header."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + config.to_yaml() + "\n"
