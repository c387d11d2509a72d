"""Which rows represent what: the reference mix of each (base model, stage), the Pareto front,
and the weight that represents each merge method (the `best_weight` options)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mixmerge.lineage import MIX, OBJECTIVE_MERGE
from mixmerge.reporting.collect import Evaluated
from mixmerge.reporting.labels import number

BEST_RULES = ("balanced", "harm", "win")


BEST_RULE_TEXT = {
    "balanced": "the largest win rate − harm change (both in percentage points)",
    "harm": "the lowest harm change",
    "win": "the highest win rate",
}


RATIO_TOLERANCE = 1e-3  # 1/6 written as 0.1667 still matches


@dataclass(frozen=True)
class Options:
    """How rows are chosen: the reference mix's safety ratio, and the weight shown per method."""

    reference_ratio: float = 0.15
    merge_weights: str = "best"  # best | all
    best_rule: str = "balanced"  # balanced | harm | win
    include_endpoints: bool = False  # may w = 0 or 1 (a parent's weights) represent a method?
    position_method: str = "slerp"
    paired_samples: int = 1000  # paired-bootstrap resamples of the Δ intervals (0: none)
    paired_seed: int = 0


def pareto_front(harm: Sequence[float], win: Sequence[float]) -> list[bool]:
    """True for each point no other point dominates: lower-or-equal harm change and higher-or-equal
    win rate, better in at least one. Points with a missing value are never on the front."""
    points = list(zip(harm, win, strict=True))
    defined = [not (math.isnan(h) or math.isnan(w)) for h, w in points]
    front = []
    for i, (h, w) in enumerate(points):
        if not defined[i]:
            front.append(False)
            continue
        dominated = any(
            defined[j] and h2 <= h and w2 >= w and (h2 < h or w2 > w)
            for j, (h2, w2) in enumerate(points)
        )
        front.append(not dominated)
    return front


def _is_reference(model: Evaluated, ratio: float) -> bool:
    d = model.description
    return (
        d.family == MIX
        and d.safety_ratio is not None
        and abs(d.safety_ratio - ratio) < RATIO_TOLERANCE
        and len(d.languages) > 1
    )


def references(
    models: Sequence[Evaluated], ratio: float
) -> dict[tuple[str | None, str], Evaluated]:
    """The multilingual reference mix (15% safety) of each (base model, stage): the one trained on
    the most languages, then the most recently evaluated."""
    refs: dict[tuple[str | None, str], Evaluated] = {}
    for m in models:
        if not _is_reference(m, ratio):
            continue
        key = (m.description.base_model, m.description.stage)
        old = refs.get(key)
        rank = (len(m.description.languages), str(m.results.get("created") or ""))
        if old is None or rank > (
            len(old.description.languages),
            str(old.results.get("created") or ""),
        ):
            refs[key] = m
    return refs


def is_endpoint(weight: Any) -> bool:
    """A safety weight of 0 or 1 (everywhere, for a per-layer gradient): all of one parent, so
    not a merge of the two (though merge methods may still change it slightly, e.g. TIES)."""
    values = weight if isinstance(weight, list) else [weight]
    numbers = [number(v) for v in values]
    return bool(numbers) and (all(v == 0.0 for v in numbers) or all(v == 1.0 for v in numbers))


def best_rule_text(options: Options) -> str:
    """The main table's caption: which weight represents a method, and among which merges."""
    among = (
        "among every evaluated weight"
        if options.include_endpoints
        else "among real merges (0 < w < 1; w = 0 and w = 1 are a parent's weights)"
    )
    return (
        f"for each method the weight with {BEST_RULE_TEXT[options.best_rule]} {among} "
        f"(`best_weight.rule={options.best_rule}`, "
        f"`best_weight.include_endpoints={str(options.include_endpoints).lower()}`)"
    )


def _score(row: pd.Series, rule: str) -> float:
    if rule == "harm":
        return -row["harm_change_pct"]
    if rule == "win":
        return row["win_rate_pct"]
    return row["win_rate_pct"] - row["harm_change_pct"]


def merges_frame(models: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Every objective merge (method × weight), with `selected` marking the weight the main table
    shows for its method (by `options.best_rule`, among real merges unless
    `options.include_endpoints`)."""
    merges = models[models["family"] == OBJECTIVE_MERGE].copy()
    merges["selected"] = False
    for _, group in merges.groupby(["base_model", "stage", "method"], dropna=False):
        candidates = group if options.include_endpoints else group[~group["endpoint"]]
        scores = candidates.apply(lambda r: _score(r, options.best_rule), axis=1).dropna()
        if options.merge_weights == "all":
            merges.loc[group.index, "selected"] = True
        elif len(scores):
            merges.loc[scores.idxmax(), "selected"] = True
    # Rows arrive in report order (see sort_key); keep it, and weights ascending within a method.
    return merges
