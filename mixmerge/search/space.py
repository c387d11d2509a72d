"""The search space: which methods, the safety weight's range and per-layer anchors, and each
method's own parameters (ranges from the method registry unless `search.space.params` says
otherwise); checked before anything is written, and sampled one trial at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mixmerge.errors import MixmergeError
from mixmerge.merging.methods import METHODS, Method
from mixmerge.merging.weights import show

KEY = "search.space"


@dataclass(frozen=True)
class Range:
    """A closed interval to sample from; low == high is a fixed value."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass(frozen=True)
class SearchSpace:
    methods: tuple[str, ...]
    weighted: bool  # the recipe has a safety weight (objective recipe)
    safety_weight: Range
    gradient: int  # anchors of the per-layer gradient (1: one number)
    step: float
    params: dict[str, dict[str, Range]]  # method → parameter → range
    fixed: dict[str, Any] = field(default_factory=dict)  # non-numeric fixed values (booleans)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, stored with the study so a resumed search can refuse a changed space."""
        return {
            "methods": list(self.methods),
            "weighted": self.weighted,
            "safety_weight": [self.safety_weight.low, self.safety_weight.high],
            "gradient": self.gradient,
            "step": self.step,
            "params": {
                m: {p: [r.low, r.high] for p, r in ps.items()} for m, ps in self.params.items()
            },
            "fixed": self.fixed,
        }


@dataclass(frozen=True)
class Candidate:
    """One merge to try: the `merge` group option and the `merge.*` values the search set."""

    method: str
    safety_weight: float | list[float] | None  # None: the method (or recipe) takes none
    params: dict[str, Any]

    def overrides(self) -> list[str]:
        """Hydra overrides of conf/merge.yaml that make this merge."""
        out = [f"merge={self.method}"]
        if self.safety_weight is not None:
            out.append(f"merge.safety_weight={show(self.safety_weight).replace(' ', '')}")
        out += [f"merge.{k}={_value(v)}" for k, v in sorted(self.params.items())]
        return out

    def key(self) -> str:
        """Identity of the merge: two trials with the same key merge the same model."""
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "safety_weight": self.safety_weight, "params": self.params}


def _value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def _number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _range(value: Any, key: str, bounds: tuple[float, float] | None = None) -> Range:
    """[low, high] or one number (fixed)."""
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value)
    if _number(value):
        value = [value, value]
    ok = isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)
    if ok and bounds is not None:
        ok = bounds[0] <= value[0] and value[1] <= bounds[1]
    if not ok or value[0] > value[1]:
        where = (
            f" with {bounds[0]:g} ≤ low ≤ high ≤ {bounds[1]:g}" if bounds else " with low ≤ high"
        )
        raise MixmergeError(f"{key}={show(value)}: expected [low, high]{where}, or one number")
    return Range(float(value[0]), float(value[1]))


def build_space(space: DictConfig, recipe_kind: str, models: int, recipe_name: str) -> SearchSpace:
    """The checked search space; an empty, unknown or contradictory one is one line."""
    methods = space.get("methods")
    if not isinstance(methods, ListConfig) or len(methods) == 0:
        raise MixmergeError(
            f"{KEY}.methods={show(methods)}: expected a non-empty list of merge methods "
            f"(some of {', '.join(METHODS)})"
        )
    names = tuple(dict.fromkeys(str(m) for m in methods))
    for name in names:
        if name not in METHODS:
            raise MixmergeError(
                f"{KEY}.methods: unknown method '{name}' (expected some of {', '.join(METHODS)})"
            )
        spec = METHODS[name]
        if spec.models is not None and spec.models != models:
            raise MixmergeError(
                f"{KEY}.methods: {name} merges exactly {spec.models} models; "
                f"recipe={recipe_name} names {models}"
            )
    weighted = recipe_kind == "objective"
    weight = _range(space.get("safety_weight"), f"{KEY}.safety_weight", (0.0, 1.0))
    gradient = space.get("gradient")
    if not isinstance(gradient, int) or isinstance(gradient, bool) or gradient < 1:
        raise MixmergeError(
            f"{KEY}.gradient={gradient}: expected an integer ≥ 1 (anchors of the per-layer gradient)"
        )
    step = space.get("step")
    if not _number(step) or not 0 < step <= 1:
        raise MixmergeError(f"{KEY}.step={step}: expected a number in (0, 1]")

    chosen = [METHODS[n] for n in names]
    raw = space.get("params")
    overrides = OmegaConf.to_container(raw) if OmegaConf.is_config(raw) else raw
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise MixmergeError(f"{KEY}.params: expected a mapping parameter → [low, high] or a value")
    known = sorted({p.name for m in chosen for p in m.params})
    fixed: dict[str, Any] = {}
    ranges: dict[str, Range] = {}
    for name, value in overrides.items():
        if name not in known:
            raise MixmergeError(
                f"{KEY}.params.{name}: not a parameter of the searched methods "
                f"(their parameters: {', '.join(known)})"
            )
        if isinstance(value, (bool, str)):
            fixed[name] = value
        else:
            ranges[name] = _range(value, f"{KEY}.params.{name}")
    params = {m.name: _method_params(m, ranges) for m in chosen}
    return SearchSpace(names, weighted, weight, int(gradient), float(step), params, fixed)


def _method_params(m: Method, ranges: dict[str, Range]) -> dict[str, Range]:
    out = {}
    for p in m.params:
        if p.name in ranges:
            out[p.name] = ranges[p.name]
        elif p.searchable:
            out[p.name] = Range(float(p.low), float(p.high))
    return out


def _suggest(trial: Any, name: str, r: Range, step: float) -> float:
    if r.fixed:
        return r.low
    if r.high - r.low < step:
        return r.low
    # A grid of `step` so repeated candidates are recognised (and merged once) and names stay short;
    # Optuna lowers `high` to the grid when the range is not a multiple of the step.
    return round(trial.suggest_float(name, r.low, r.high, step=step), 6)


def suggest(trial: Any, space: SearchSpace) -> Candidate:
    """Sample one candidate (define-by-run: a method's parameters only when it is chosen)."""
    method = trial.suggest_categorical("method", list(space.methods))
    spec = METHODS[method]
    weight: float | list[float] | None = None
    if space.weighted and spec.has_safety_weight:
        if spec.gradient and space.gradient > 1:
            weight = [
                _suggest(trial, f"safety_weight_{i}", space.safety_weight, space.step)
                for i in range(space.gradient)
            ]
        else:
            weight = _suggest(trial, "safety_weight", space.safety_weight, space.step)
    params: dict[str, Any] = {
        name: _suggest(trial, f"{method}.{name}", r, space.step)
        for name, r in space.params[method].items()
    }
    params.update({k: v for k, v in space.fixed.items() if k in {p.name for p in spec.params}})
    if method == "della":
        # mergekit needs density ± epsilon inside (0, 1): keep epsilon within what density allows.
        density = params.get("density", spec.param("density").default)
        limit = round(min(density, 1 - density) - 0.01, 6)
        if params.get("epsilon", spec.param("epsilon").default) > limit:
            params["epsilon"] = max(limit, 0.0)
    return Candidate(method, weight, params)
