"""The merge methods mixmerge exposes, in one registry: name, display name, colour, the mergekit
method, the `merge.*` parameters (defaults, search ranges), and what `merge.safety_weight` means.

mergekit's own registry (`mergekit/merge_methods/registry.py`) is the final word on the maths; this
table says how the study's one-meaning safety weight maps onto each method, which parameters the
search may tune, and how the report names and colours each method. `conf/merge/<name>.yaml` holds
the same defaults for the command line; a test checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mixmerge.errors import MixmergeError

Scope = Literal["shared", "model"]  # mergekit `parameters`, or each merged model's `parameters`


@dataclass(frozen=True)
class Param:
    """One `merge.<name>` key passed to mergekit."""

    name: str
    default: float | bool
    scope: Scope
    # The range the search samples from (floats only; None: the search keeps the default).
    low: float | None = None
    high: float | None = None
    doc: str = ""

    @property
    def searchable(self) -> bool:
        return self.low is not None and self.high is not None


@dataclass(frozen=True)
class Method:
    """A merge method as mixmerge exposes it."""

    name: str  # conf/merge/<name>.yaml, `merge.name`
    display: str  # the report's name
    colour: str  # the report's colour (matplotlib)
    mergekit: str  # mergekit's `merge_method`
    base: Literal["required", "optional", "none"]  # the common parent model as mergekit base
    gradient: bool  # accepts a per-layer list as the weight
    models: int | None  # exactly this many models (None: any number ≥ 2)
    # What `merge.safety_weight` w means; None: the method takes no weights at all.
    safety_weight: str | None
    params: tuple[Param, ...] = field(default_factory=tuple)
    reference: str = ""

    @property
    def has_safety_weight(self) -> bool:
        return self.safety_weight is not None

    @property
    def needs_base(self) -> bool:
        return self.base == "required"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise MixmergeError(
            f"merge.{name}: not a parameter of merge={self.name} "
            f"(expected one of {', '.join(p.name for p in self.params) or 'none'})"
        )


TASK_VECTORS = "the safety task vector gets weight w, the general one 1−w"
DENSITY = Param("density", 0.5, "model", 0.1, 0.9, "fraction of each task vector kept")
LAMBDA = Param("lambda", 1.0, "shared", 0.5, 1.5, "scale of the merged task vector")
INT8 = Param("int8_mask", False, "shared", doc="store the sign masks as int8 (saves memory)")


def _normalize(default: bool) -> Param:
    return Param("normalize", default, "shared", doc="divide by the summed weights")


def _rescale(default: bool) -> Param:
    return Param("rescale", default, "shared", doc="rescale kept entries (L1-norm matching)")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "linear", "Linear", "tab:orange", "linear", "none", False, None,
            "w·safety + (1−w)·general", (_normalize(True),),
            "https://arxiv.org/abs/2203.05482",
        ),
        Method(
            "slerp", "SLERP", "tab:green", "slerp", "none", True, 2,
            "t = w from the general model (t=0) to the safety model (t=1)", (),
            "https://en.wikipedia.org/wiki/Slerp",
        ),
        Method(
            "ties", "TIES", "tab:red", "ties", "required", True, None, TASK_VECTORS,
            (DENSITY, _normalize(True), LAMBDA, INT8), "https://arxiv.org/abs/2306.01708",
        ),
        Method(
            "dare_ties", "DARE-TIES", "tab:purple", "dare_ties", "required", True, None,
            TASK_VECTORS, (DENSITY, _normalize(False), LAMBDA, _rescale(True), INT8),
            "https://arxiv.org/abs/2311.03099",
        ),
        Method(
            "task_arithmetic", "Task arithmetic", "tab:brown", "task_arithmetic", "required",
            True, None, TASK_VECTORS, (_normalize(False), LAMBDA),
            "https://arxiv.org/abs/2212.04089",
        ),
        Method(
            "dare_linear", "DARE-Linear", "tab:pink", "dare_linear", "required", True, None,
            TASK_VECTORS + " (random drops, no sign election)",
            (DENSITY, _normalize(False), LAMBDA, _rescale(True)),
            "https://arxiv.org/abs/2311.03099",
        ),
        Method(
            "breadcrumbs_ties", "Breadcrumbs-TIES", "tab:olive", "breadcrumbs_ties", "required",
            True, None, TASK_VECTORS + " (largest and smallest entries dropped, then TIES)",
            (
                Param("density", 0.9, "model", 0.5, 0.99, "fraction kept after both cuts"),
                Param("gamma", 0.01, "model", 0.0, 0.1, "fraction of the largest entries dropped"),
                _normalize(False), LAMBDA, INT8,
            ),
            "https://arxiv.org/abs/2312.06795",
        ),
        Method(
            "della", "DELLA", "tab:cyan", "della", "required", True, None,
            TASK_VECTORS + " (magnitude-ranked drop probabilities, then TIES)",
            (
                DENSITY,
                Param("epsilon", 0.15, "model", 0.01, 0.3,
                      "spread of drop probabilities: density ± epsilon must lie in (0, 1)"),
                _normalize(True), LAMBDA, _rescale(True), INT8,
            ),
            "https://arxiv.org/abs/2406.11617",
        ),
        Method(
            "model_stock", "Model Stock", "goldenrod", "model_stock", "required", False, None,
            None,  # the interpolation ratio is computed from the angle between the task vectors
            (Param("filter_wise", False, "shared", doc="one ratio per row instead of per tensor"),),
            "https://arxiv.org/abs/2403.19522",
        ),
        Method(
            "nuslerp", "NuSLERP", "darkgreen", "nuslerp", "optional", True, 2,
            "t = w from the general model to the safety model (weights 1−w and w)",
            (
                Param("nuslerp_flatten", True, "shared", doc="interpolate whole tensors as vectors"),
                Param("nuslerp_row_wise", False, "shared", doc="interpolate rows, not columns"),
                Param("task_vectors", False, "shared",
                      doc="interpolate task vectors from the common base instead of the weights"),
            ),
            "https://github.com/arcee-ai/mergekit/blob/main/docs/merge_methods.md",
        ),
    )
}  # fmt: skip

# `merge.*` keys that are mixmerge's, not any method's.
COMMON_KEYS = frozenset({"name", "safety_weight", "dtype", "out_dtype", "tokenizer_source", "seed"})


def method(name: str) -> Method:
    """The registry entry for `merge.name`; an unknown name is one line."""
    if name not in METHODS:
        raise MixmergeError(f"merge.name={name}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def display_name(name: str) -> str:
    return METHODS[name].display if name in METHODS else str(name)


def colour(name: str, fallback: str = "tab:gray") -> str:
    return METHODS[name].colour if name in METHODS else fallback


def check_params(m: Method, values: dict[str, object]) -> None:
    """Rules between parameters that mergekit would only report deep inside a merge."""
    if m.name == "della":
        density, epsilon = values.get("density", 0.5), values.get("epsilon", 0.15)
        numbers = isinstance(density, (int, float)) and isinstance(epsilon, (int, float))
        if numbers and not (density - epsilon > 0 and density + epsilon < 1):
            raise MixmergeError(
                f"merge.epsilon={epsilon:g}: density ± epsilon must lie in (0, 1) "
                f"(density={density:g})"
            )
