"""How the report names, orders and annotates models: short labels, method names (from the
merge-method registry), safety shares and weights as text, the report order, fluency notes."""

from __future__ import annotations

from typing import Any

from mixmerge import LANGUAGES
from mixmerge.evaluation.fluency import format_shares
from mixmerge.lineage import LANGUAGE_MERGE, MIX, OBJECTIVE_MERGE, POST_MERGE
from mixmerge.merging.methods import METHODS
from mixmerge.merging.weights import show
from mixmerge.reporting import published
from mixmerge.reporting.collect import Evaluated

STAGES = ("sft", "dpo")


METHOD_NAMES = {name: m.display for name, m in METHODS.items()}  # the merge-method registry's


NAN = float("nan")


def method_name(method: str | None) -> str:
    return METHOD_NAMES.get(str(method), str(method))


def ratio_text(ratio: float | None) -> str:
    """0 → '0%', 0.15 → '15%', 1/6 → '16.7%'."""
    return "?" if ratio is None else f"{100 * ratio:.3g}%"


def weight_text(weight: Any) -> str:
    return "" if weight is None else show(weight)


def number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else NAN


def interval(values: Any, scale: float = 1.0) -> tuple[float, float]:
    if isinstance(values, list | tuple) and len(values) == 2:
        return number(values[0]) * scale, number(values[1]) * scale
    return NAN, NAN


def label(model: Evaluated) -> str:
    """A short name for plots: 'SFT mix15%', 'DPO Linear w0.3', 'SFT TIES [en fr es]'."""
    d = model.description
    stage = d.stage.upper()
    langs = "" if set(d.languages) >= set(LANGUAGES) else f" [{' '.join(d.languages)}]"
    if d.family == MIX:
        return f"{stage} mix{ratio_text(d.safety_ratio)}{langs}"
    if d.family == OBJECTIVE_MERGE:
        return f"{stage} {method_name(d.method)} w{weight_text(d.safety_weight)}"
    if d.family == LANGUAGE_MERGE:
        return f"{stage} {method_name(d.method)}{langs or ' [all]'}"
    if d.family == POST_MERGE:
        return f"{d.order} ({method_name(d.method)} w{weight_text(d.safety_weight)})"
    return model.name


def method_rank(method: Any) -> tuple[int, str]:
    order = list(published.METHOD_KEYS)
    return (order.index(method) if method in order else len(order), str(method))


def sort_key(model: Evaluated) -> tuple[Any, ...]:
    """Report order: base model, SFT before DPO, mixes (by safety share), objective merges (by
    method, weight), language merges, models trained after a merge, others."""
    d = model.description
    families = (MIX, OBJECTIVE_MERGE, LANGUAGE_MERGE, POST_MERGE)
    weight = d.safety_weight
    return (
        str(d.base_model),
        STAGES.index(d.stage) if d.stage in STAGES else len(STAGES),
        families.index(d.family) if d.family in families else len(families),
        d.safety_ratio if d.safety_ratio is not None else -1.0,
        method_rank(d.method),
        -len(d.languages),
        weight if isinstance(weight, float) else -1.0,
        weight_text(weight),
        model.name,
    )


def fluency_below(results: dict[str, Any]) -> str:
    """`model: hi 40% ar 55%; baseline: hi 10%` — languages where the model or its baseline answers
    fluently in fewer than the evaluation's threshold of prompts (empty when none, or when the
    results predate the fluency check)."""
    parts = []
    for who, summary in (results.get("fluency") or {}).items():
        below = summary.get("below_threshold") or []
        if below:
            parts.append(f"{who}: {format_shares(summary, below)}")
    return "; ".join(parts)
