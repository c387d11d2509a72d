"""The study's tables as pandas DataFrames: every evaluated model, the main table (mixes and merge
methods, SFT and DPO), merges by weight, per-language results, language merges, merge position.

Units: harm change and win rate in percent (as `eval_results.json` gives them); a Δ is a difference
in percentage points from the 15% safety mix of the same base model and stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mixmerge import LANGUAGES
from mixmerge.evaluation.fluency import format_shares
from mixmerge.lineage import LANGUAGE_MERGE, MIX, OBJECTIVE_MERGE, POST_MERGE
from mixmerge.merging.methods import METHODS
from mixmerge.merging.weights import show
from mixmerge.reporting import published
from mixmerge.reporting.collect import Evaluated
from mixmerge.reporting.comparisons import Comparisons, delta_columns, parents_of

STAGES = ("sft", "dpo")
METHOD_NAMES = {name: m.display for name, m in METHODS.items()}  # the merge-method registry's
BEST_RULES = ("balanced", "harm", "win")
BEST_RULE_TEXT = {
    "balanced": "the largest win rate − harm change (both in percentage points)",
    "harm": "the lowest harm change",
    "win": "the highest win rate",
}
RATIO_TOLERANCE = 1e-3  # 1/6 written as 0.1667 still matches
NAN = float("nan")


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


def method_name(method: str | None) -> str:
    return METHOD_NAMES.get(str(method), str(method))


def ratio_text(ratio: float | None) -> str:
    """0 → '0%', 0.15 → '15%', 1/6 → '16.7%'."""
    return "?" if ratio is None else f"{100 * ratio:.3g}%"


def weight_text(weight: Any) -> str:
    return "" if weight is None else show(weight)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else NAN


def _ci(values: Any, scale: float = 1.0) -> tuple[float, float]:
    if isinstance(values, list | tuple) and len(values) == 2:
        return _num(values[0]) * scale, _num(values[1]) * scale
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
        _method_rank(d.method),
        -len(d.languages),
        weight if isinstance(weight, float) else -1.0,
        weight_text(weight),
        model.name,
    )


def model_frame(
    models: Sequence[Evaluated], options: Options, comparisons: Comparisons | None = None
) -> pd.DataFrame:
    """One row per evaluated model: what it is, its averages with 95% CIs, Δ from the 15% mix
    with its paired 95% interval, and whether it is on the Pareto front of its (base model, stage)."""
    refs = references(models, options.reference_ratio)
    comparisons = comparisons or Comparisons(options.paired_samples, options.paired_seed)
    rows = []
    for m in models:
        d, avg = m.description, m.average
        harm, win = _num(avg.get("harm_change_pct")), _num(avg.get("win_rate_pct"))
        ref = refs.get((d.base_model, d.stage))
        ref_harm = _num(ref.average.get("harm_change_pct")) if ref else NAN
        ref_win = _num(ref.average.get("win_rate_pct")) if ref else NAN
        weight = d.safety_weight
        rows.append(
            {
                "name": m.name,
                "label": label(m),
                "base_model": d.base_model,
                "stage": d.stage,
                "family": d.family,
                "order": d.order,
                "method": d.method,
                "recipe": d.recipe,
                "safety_ratio": NAN if d.safety_ratio is None else d.safety_ratio,
                "safety_weight": weight_text(weight),
                "weight_value": weight if isinstance(weight, float) else NAN,
                "endpoint": weight is not None and is_endpoint(weight),
                "languages": " ".join(d.languages),
                "parent_languages": "; ".join(" ".join(p) for p in d.parent_languages),
                "eval_languages": " ".join(m.eval_languages),
                "judge": m.judge,
                "baseline": m.baseline,
                "fluency_below": fluency_below(m.results),
                "harm_change_pct": harm,
                "harm_change_ci_low": _ci(avg.get("harm_change_pct_ci"))[0],
                "harm_change_ci_high": _ci(avg.get("harm_change_pct_ci"))[1],
                "win_rate_pct": win,
                # eval_results.json gives the win-rate interval as a fraction.
                "win_rate_ci_low": _ci(avg.get("win_rate_ci"), 100.0)[0],
                "win_rate_ci_high": _ci(avg.get("win_rate_ci"), 100.0)[1],
                "reference": ref.name if ref else None,
                "delta_harm_pct": harm - ref_harm,
                "delta_win_pct": win - ref_win,
                **delta_columns(comparisons.get(m, ref, "reference mix") if ref else None),
                "evaluations": m.evaluations,
                "results_file": str(m.results_path),
                "judgements_file": str(m.judgements_path or ""),
                "path": str(m.path),
            }
        )
    frame = pd.DataFrame(rows, columns=_MODEL_COLUMNS)
    frame["pareto"] = False
    for _, group in frame.groupby(["base_model", "stage"], dropna=False):
        frame.loc[group.index, "pareto"] = pareto_front(
            group["harm_change_pct"].tolist(), group["win_rate_pct"].tolist()
        )
    return frame


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


_MODEL_COLUMNS = [
    "name", "label", "base_model", "stage", "family", "order", "method", "recipe", "safety_ratio",
    "safety_weight", "weight_value", "endpoint", "languages", "parent_languages", "eval_languages", "judge",
    "baseline", "fluency_below", "harm_change_pct", "harm_change_ci_low", "harm_change_ci_high", "win_rate_pct",
    "win_rate_ci_low", "win_rate_ci_high", "reference", "delta_harm_pct", "delta_win_pct",
    "delta_harm_ci_low", "delta_harm_ci_high", "delta_harm_sig", "delta_win_ci_low",
    "delta_win_ci_high", "delta_win_sig", "evaluations", "results_file", "judgements_file", "path",
]  # fmt: skip
DELTA_CI_COLUMNS = [
    "delta_harm_ci_low", "delta_harm_ci_high", "delta_harm_sig", "delta_win_ci_low",
    "delta_win_ci_high", "delta_win_sig",
]  # fmt: skip
VALUE_COLUMNS = [
    "harm_change_pct", "harm_change_ci_low", "harm_change_ci_high", "win_rate_pct",
    "win_rate_ci_low", "win_rate_ci_high", "delta_harm_pct", "delta_win_pct", *DELTA_CI_COLUMNS,
]  # fmt: skip
PUBLISHED_COLUMNS = [
    "published_harm_change_pct", "published_win_rate_pct", "published_delta_harm_pct",
    "published_delta_win_pct",
]  # fmt: skip


def is_endpoint(weight: Any) -> bool:
    """A safety weight of 0 or 1 (everywhere, for a per-layer gradient): all of one parent, so
    not a merge of the two (though merge methods may still change it slightly, e.g. TIES)."""
    values = weight if isinstance(weight, list) else [weight]
    numbers = [_num(v) for v in values]
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


def _method_rank(method: Any) -> tuple[int, str]:
    order = list(published.METHOD_KEYS)
    return (order.index(method) if method in order else len(order), str(method))


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


def _published(table: str, stage: str, key: str | None) -> dict[str, float]:
    row = published.lookup(table, stage, key)
    ref = published.reference(stage)
    if row is None:
        return dict.fromkeys(PUBLISHED_COLUMNS, NAN)
    return {
        "published_harm_change_pct": row.harm_change_pct,
        "published_win_rate_pct": row.win_rate_pct,
        "published_delta_harm_pct": row.harm_change_pct - ref.harm_change_pct if ref else NAN,
        "published_delta_win_pct": row.win_rate_pct - ref.win_rate_pct if ref else NAN,
    }


def _mix_key(ratio: float, reference_ratio: float) -> str | None:
    for key, value in (("mix0", 0.0), ("mix15", reference_ratio), ("mix100", 1.0)):
        if abs(ratio - value) < RATIO_TOLERANCE:
            return key
    return None


_ROW_COLUMNS = ["name", "safety_weight", *VALUE_COLUMNS, "pareto"]


def _user_values(row: pd.Series | None) -> dict[str, Any]:
    if row is None:
        return {
            "name": None,
            "safety_weight": "",
            **dict.fromkeys(VALUE_COLUMNS, NAN),
            "delta_harm_sig": False,
            "delta_win_sig": False,
            "pareto": False,
        }
    return {c: row[c] for c in _ROW_COLUMNS}


def _groups(models: pd.DataFrame) -> list[tuple[Any, str]]:
    """(base model, stage) pairs present, SFT before DPO."""
    pairs = {(b, s) for b, s in zip(models["base_model"], models["stage"], strict=True)}
    return sorted(pairs, key=lambda p: (str(p[0]), STAGES.index(p[1]) if p[1] in STAGES else 9))


def main_frame(models: pd.DataFrame, merges: pd.DataFrame, options: Options) -> pd.DataFrame:
    """The study's main table: for each stage the multilingual mixes and each merge method (its
    selected weight, or every weight), with Δ from the 15% mix and the published numbers beside.
    A published row the user has not evaluated is kept, with empty values, in its place."""
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []  # (order, row)
    for g, (base, stage) in enumerate(_groups(models)):
        in_group = models["base_model"].fillna("") == (base or "")
        group = models[in_group & (models["stage"] == stage)]
        covered = set()
        mixes = group[(group["family"] == MIX) & (group["languages"].str.count(" ") > 0)]
        for _, m in mixes.iterrows():
            key = _mix_key(m["safety_ratio"], options.reference_ratio)
            covered.add(key)
            langs = "" if set(m["languages"].split()) >= set(LANGUAGES) else f" [{m['languages']}]"
            row = {
                "base_model": base, "stage": stage,
                "row": f"{ratio_text(m['safety_ratio'])} safety mix{langs}",
                **_user_values(m), **_published("main", stage, key),
            }  # fmt: skip
            rows.append(((g, 0, m["safety_ratio"], len(rows)), row))
        chosen = merges[
            (merges["base_model"].fillna("") == (base or ""))
            & (merges["stage"] == stage)
            & merges["selected"]
        ]
        for _, m in chosen.iterrows():
            covered.add(m["method"])
            row = {
                "base_model": base, "stage": stage, "row": method_name(m["method"]),
                **_user_values(m), **_published("main", stage, m["method"]),
            }  # fmt: skip
            rows.append(((g, 1, _method_rank(m["method"]), len(rows)), row))
        ratios = {"mix0": 0.0, "mix15": options.reference_ratio, "mix100": 1.0}
        for pub in published.MAIN:
            if pub.stage != stage or pub.key in covered:
                continue
            row = {
                "base_model": base, "stage": stage, "row": pub.label, **_user_values(None),
                **_published("main", stage, pub.key),
            }  # fmt: skip
            place = (0, ratios[pub.key]) if pub.key in ratios else (1, _method_rank(pub.key))
            rows.append(((g, *place, len(rows)), row))
    return pd.DataFrame([row for _, row in sorted(rows, key=lambda r: r[0])], columns=MAIN_COLUMNS)


MAIN_COLUMNS = ["base_model", "stage", "row", *_ROW_COLUMNS, *PUBLISHED_COLUMNS]


def per_language_frame(models: Sequence[Evaluated], frame: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per (model, evaluated language)."""
    rows = []
    for m, (_, info) in zip(models, frame.iterrows(), strict=True):
        for lang, v in m.results["languages"].items():
            rows.append(
                {
                    "name": m.name,
                    "label": info["label"],
                    "base_model": info["base_model"],
                    "stage": info["stage"],
                    "family": info["family"],
                    "language": lang,
                    "harm_rate": _num(v.get("harm_rate")),
                    "baseline_harm_rate": _num(v.get("baseline_harm_rate")),
                    "harm_change_pct": _num(v.get("harm_change_pct")),
                    "harm_change_ci_low": _ci(v.get("harm_change_pct_ci"))[0],
                    "harm_change_ci_high": _ci(v.get("harm_change_pct_ci"))[1],
                    "win_rate_pct": _num(v.get("win_rate_pct")),
                    "win_rate_ci_low": _ci(v.get("win_rate_ci"), 100.0)[0],
                    "win_rate_ci_high": _ci(v.get("win_rate_ci"), 100.0)[1],
                    "n_redteam": v.get("n_redteam"),
                    "n_general": v.get("n_general"),
                }
            )
    return pd.DataFrame(rows, columns=PER_LANGUAGE_COLUMNS)


PER_LANGUAGE_COLUMNS = [
    "name", "label", "base_model", "stage", "family", "language", "harm_rate", "baseline_harm_rate",
    "harm_change_pct", "harm_change_ci_low", "harm_change_ci_high", "win_rate_pct",
    "win_rate_ci_low", "win_rate_ci_high", "n_redteam", "n_general",
]  # fmt: skip


def language_key(parent_languages: str) -> str | None:
    """'all' for a merge of the six monolingual models, 'en_fr_es' for the [en, fr, es] subset."""
    parents = [p.split() for p in parent_languages.split(";") if p.strip()]
    if not parents or any(len(p) != 1 for p in parents):
        return None
    merged = {p[0] for p in parents}
    if merged == set(LANGUAGES):
        return "all"
    if merged == {"en", "fr", "es"}:
        return "en_fr_es"
    return None


def language_frame(models: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Language-based merges beside the multilingual 15% mix of the same stage (SFT always shown,
    with the published rows; other stages when they have a language merge)."""
    rows = []
    for base, stage in _groups(models):
        group = models[
            (models["base_model"].fillna("") == (base or "")) & (models["stage"] == stage)
        ]
        lang_merges = group[group["family"] == LANGUAGE_MERGE]
        if stage != "sft" and lang_merges.empty:
            continue
        ref = group[group["name"] == group["reference"]].head(1)
        rows.append(
            {
                "base_model": base, "stage": stage,
                "row": f"multilingual {ratio_text(options.reference_ratio)} safety mix",
                "method": "", "merged_languages": ref["languages"].iloc[0] if len(ref) else "",
                **_user_values(ref.iloc[0] if len(ref) else None),
                **_published("language", stage, "mix15"),
            }
        )  # fmt: skip
        covered = set()
        ordered = lang_merges.assign(_n=lang_merges["languages"].str.count(" ")).sort_values(
            ["_n", "name"], ascending=[False, True]
        )
        for _, m in ordered.iterrows():
            key = language_key(m["parent_languages"])
            covered.add(key)
            mono = all(len(p.split()) == 1 for p in m["parent_languages"].split(";") if p.strip())
            what = f"[{m['languages']}] monolingual models" if mono else "multilingual models"
            rows.append(
                {
                    "base_model": base, "stage": stage,
                    "row": f"{method_name(m['method'])} merge of {what}", "method": m["method"],
                    "merged_languages": m["languages"], **_user_values(m),
                    **_published("language", stage, key),
                }
            )  # fmt: skip
        for row in published.LANGUAGE:
            if row.stage == stage and row.key != "mix15" and row.key not in covered:
                rows.append(
                    {
                        "base_model": base, "stage": stage, "row": row.label, "method": "ties",
                        "merged_languages": "en fr es" if row.key == "en_fr_es" else " ".join(LANGUAGES),
                        **_user_values(None), **_published("language", stage, row.key),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows, columns=LANGUAGE_COLUMNS)


LANGUAGE_COLUMNS = ["base_model", "stage", "row", "method", "merged_languages", *_ROW_COLUMNS,
                    *PUBLISHED_COLUMNS]  # fmt: skip
POSITIONS = (
    ("SFT→merge", "sft", OBJECTIVE_MERGE, "merge of SFT models"),
    ("SFT→DPO→merge", "dpo", OBJECTIVE_MERGE, "merge of DPO models (DPO, then merge)"),
    ("SFT→merge→DPO", "dpo", POST_MERGE, "DPO on the merge of SFT models (merge, then DPO)"),
)


def position_frame(models: pd.DataFrame, merges: pd.DataFrame, options: Options) -> pd.DataFrame:
    """Merge position: SFT→merge vs SFT→DPO→merge vs SFT→merge→DPO, for each method and weight a
    model trained after a merge used (else `options.position_method` at its selected SFT weight).
    The stage order comes from the provenance chain."""
    rows = []
    for base in sorted({b for b, _ in _groups(models)}, key=str):
        group = models[models["base_model"].fillna("") == (base or "")]
        post = group[group["family"] == POST_MERGE]
        pairs = sorted(
            {(m, w) for m, w in zip(post["method"], post["safety_weight"], strict=True)}, key=str
        )
        if not pairs:
            sft = merges[
                (merges["base_model"].fillna("") == (base or ""))
                & (merges["stage"] == "sft")
                & (merges["method"] == options.position_method)
                & merges["selected"]
            ]
            pairs = [(options.position_method, w) for w in sft["safety_weight"]] or [
                (options.position_method, "")
            ]
        for method, weight in pairs:
            for order, stage, family, what in POSITIONS:
                found = group[
                    (group["family"] == family)
                    & (group["stage"] == stage)
                    & (group["method"] == method)
                    & (group["safety_weight"] == weight)
                ]
                for m in [r for _, r in found.iterrows()] or [None]:
                    rows.append(
                        {
                            "base_model": base, "method": method, "order": order,
                            "row": f"{order}: {what}", **_user_values(m), "safety_weight": weight,
                            **_published("position", stage, order),
                        }
                    )  # fmt: skip
    return pd.DataFrame(rows, columns=POSITION_COLUMNS)


POSITION_COLUMNS = ["base_model", "method", "order", "row", *_ROW_COLUMNS, *PUBLISHED_COLUMNS]


def parents_frame(
    models: Sequence[Evaluated], frame: pd.DataFrame, comparisons: Comparisons
) -> pd.DataFrame:
    """Each evaluated objective merge against each of its evaluated parents (the general and the
    safety model), paired: Δ = merge − parent, in percentage points."""
    rows = []
    labels = dict(zip(frame["name"], frame["label"], strict=True))
    for m in models:
        if m.description.family != OBJECTIVE_MERGE:
            continue
        mine = frame[frame["name"] == m.name].iloc[0]
        for role, parent in parents_of(m, models):
            theirs = frame[frame["name"] == parent.name].iloc[0]
            result = comparisons.get(m, parent, role)
            rows.append(
                {
                    "base_model": mine["base_model"], "stage": mine["stage"], "name": m.name,
                    "label": labels[m.name], "method": mine["method"],
                    "safety_weight": mine["safety_weight"], "parent_role": role,
                    "parent": parent.name, "parent_label": labels[parent.name],
                    "delta_harm_pct": mine["harm_change_pct"] - theirs["harm_change_pct"],
                    "delta_win_pct": mine["win_rate_pct"] - theirs["win_rate_pct"],
                    **delta_columns(result),
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=PARENT_COLUMNS)


PARENT_COLUMNS = [
    "base_model", "stage", "name", "label", "method", "safety_weight", "parent_role", "parent",
    "parent_label", "delta_harm_pct", "delta_win_pct", *DELTA_CI_COLUMNS,
]  # fmt: skip


def published_frame() -> pd.DataFrame:
    """Every published number, labelled, with Δ from the published 15% mix of the same stage."""
    rows = [
        {
            "source": published.PUBLISHED_LABEL,
            "table": r.table,
            "stage": r.stage,
            "key": r.key,
            "row": r.label,
            **_published(r.table, r.stage, r.key),
        }
        for r in published.ALL
    ]
    return pd.DataFrame(rows)
