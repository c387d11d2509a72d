"""The mergekit configuration for a recipe and a method, and the YAML written next to the merge.

How `merge.safety_weight` (w) maps to mergekit's parameters (objective recipe):
- linear: models general (weight 1−w) and safety (weight w), normalize: true;
- slerp: base_model general, models general + safety, t = w (t=0 is mergekit's base model);
- ties, dare_ties, task_arithmetic: base_model = the common parent, models general (weight 1−w)
  and safety (weight w), plus density / normalize / lambda / rescale from the `merge` group.
A list w is a per-layer gradient, passed on as a list (1−w element by element for the general model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixmerge.errors import MixmergeError
from mixmerge.merging.recipes import ModelRef, Recipe
from mixmerge.merging.weights import is_gradient, show


@dataclass(frozen=True)
class MethodSpec:
    """What a method needs from a recipe, and which `merge.*` keys it passes to mergekit."""

    needs_base: bool  # task vectors are taken against a common base model
    gradient: bool  # accepts a per-layer list as the weight
    models: int | None  # exactly this many models (None: any number ≥ 2)
    global_params: tuple[str, ...]  # → mergekit `parameters`
    model_params: tuple[str, ...]  # → each merged model's `parameters`, next to its weight


METHODS: dict[str, MethodSpec] = {
    "linear": MethodSpec(False, False, None, ("normalize",), ()),
    "slerp": MethodSpec(False, True, 2, (), ()),
    "ties": MethodSpec(True, True, None, ("normalize", "lambda", "int8_mask"), ("density",)),
    "dare_ties": MethodSpec(
        True, True, None, ("normalize", "lambda", "rescale", "int8_mask"), ("density",)
    ),
    "task_arithmetic": MethodSpec(True, True, None, ("normalize", "lambda"), ()),
}


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise MixmergeError(f"merge.name={name}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def check_recipe_fits(method: str, recipe: Recipe) -> None:
    """Model count and gradient rules that depend on both the method and the recipe."""
    spec = METHODS[method]
    count = len(recipe.inputs)
    if spec.models is not None and count != spec.models:
        raise MixmergeError(
            f"merge={method}: merges exactly {spec.models} models; recipe={recipe.name} names {count}"
        )
    if count < 2:
        raise MixmergeError(f"recipe={recipe.name}: names {count} model; a merge needs at least 2")
    if not spec.gradient:
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
    spec = METHODS[method]
    config: dict[str, Any] = {"merge_method": method}
    if method == "slerp":
        first, second = (item.model for item in recipe.inputs)
        # mergekit's SLERP interpolates from its base model (t=0) to the other model (t=1).
        config["base_model"] = str(first.path)
        config["models"] = [{"model": str(first.path)}, {"model": str(second.path)}]
        config["parameters"] = {"t": recipe.slerp_t}
    else:
        extra = {key: _plain(merge[key]) for key in spec.model_params if merge.get(key) is not None}
        config["models"] = [
            {"model": str(item.model.path), "parameters": {"weight": item.weight, **extra}}
            for item in recipe.inputs
        ]
        if spec.needs_base:
            if base is None:
                raise MixmergeError(f"merge={method}: needs a base model (recipe.base)")
            config["base_model"] = str(base.path)
        params = {
            key: _plain(merge[key]) for key in spec.global_params if merge.get(key) is not None
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
