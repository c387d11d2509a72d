"""The safety weight: one number in [0, 1] (or a per-layer gradient of them) with one meaning.

`w` is the safety model's share in every method: Linear w·safety + (1−w)·general, SLERP t=w from
the general model (t=0) to the safety model (t=1), task-vector methods weight the safety task
vector w and the general one 1−w. A list is interpolated across layers (mergekit's gradients).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from omegaconf import ListConfig, OmegaConf

from mixmerge.artifacts import Weight
from mixmerge.errors import MixmergeError

__all__ = ["Weight", "check_weight", "complement", "is_gradient", "show"]


def show(value: Any) -> str:
    """A value as a user would type it back: 0.3, [0, 0.5, 1], abc."""
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Real) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_weight(value: Any, key: str) -> Weight:
    """A number in [0, 1], or a non-empty list of them (a per-layer gradient), as plain Python."""
    if isinstance(value, (ListConfig, list, tuple)):
        items = list(OmegaConf.to_container(value) if isinstance(value, ListConfig) else value)
        if not items or not all(_number(v) and 0 <= v <= 1 for v in items):
            raise MixmergeError(
                f"{key}={show(value)}: expected a number in [0, 1] or a list of them (a per-layer gradient)"
            )
        return [float(v) for v in items]
    if not _number(value) or not 0 <= value <= 1:
        raise MixmergeError(f"{key}={show(value)}: expected a number in [0, 1]")
    return float(value)


def complement(weight: Weight) -> Weight:
    """1 − w, element by element for a gradient (rounded so the YAML reads 0.7, not 0.7000000000000001)."""
    if isinstance(weight, list):
        return [round(1.0 - v, 12) for v in weight]
    return round(1.0 - weight, 12)


def is_gradient(weight: Weight) -> bool:
    return isinstance(weight, list)
