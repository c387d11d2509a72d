"""The study's tables as pandas DataFrames: every evaluated model, the main table (mixes and merge
methods, SFT and DPO), per-language results, language merges, merge position, merges against their
parents. Labels live in reporting/labels.py, row selection (reference mix, best weight, Pareto
front) in reporting/selection.py, the published numbers' joins in reporting/published_join.py.

Units: harm change and win rate in percent (as `eval_results.json` gives them); a Δ is a difference
in percentage points from the 15% safety mix of the same base model and stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from mixmerge import LANGUAGES
from mixmerge.lineage import LANGUAGE_MERGE, MIX, OBJECTIVE_MERGE, POST_MERGE
from mixmerge.reporting import published
from mixmerge.reporting.collect import Evaluated
from mixmerge.reporting.comparisons import Comparisons, delta_columns, parents_of
from mixmerge.reporting.labels import (
    NAN,
    STAGES,
    fluency_below,
    interval,
    label,
    method_name,
    method_rank,
    number,
    ratio_text,
    weight_text,
)
from mixmerge.reporting.published_join import PUBLISHED_COLUMNS, mix_key, published_values
from mixmerge.reporting.selection import Options, is_endpoint, pareto_front, references


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
        harm, win = number(avg.get("harm_change_pct")), number(avg.get("win_rate_pct"))
        ref = refs.get((d.base_model, d.stage))
        ref_harm = number(ref.average.get("harm_change_pct")) if ref else NAN
        ref_win = number(ref.average.get("win_rate_pct")) if ref else NAN
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
                "judge": m.judge_label,
                "baseline": m.baseline,
                "decoding": m.decoding,
                "fluency_below": fluency_below(m.results),
                "harm_change_pct": harm,
                "harm_change_ci_low": interval(avg.get("harm_change_pct_ci"))[0],
                "harm_change_ci_high": interval(avg.get("harm_change_pct_ci"))[1],
                "win_rate_pct": win,
                # eval_results.json gives the win-rate interval as a fraction.
                "win_rate_ci_low": interval(avg.get("win_rate_ci"), 100.0)[0],
                "win_rate_ci_high": interval(avg.get("win_rate_ci"), 100.0)[1],
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


_MODEL_COLUMNS = [
    "name", "label", "base_model", "stage", "family", "order", "method", "recipe", "safety_ratio",
    "safety_weight", "weight_value", "endpoint", "languages", "parent_languages", "eval_languages", "judge",
    "baseline", "decoding", "fluency_below", "harm_change_pct", "harm_change_ci_low", "harm_change_ci_high", "win_rate_pct",
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
            key = mix_key(m["safety_ratio"], options.reference_ratio)
            covered.add(key)
            langs = "" if set(m["languages"].split()) >= set(LANGUAGES) else f" [{m['languages']}]"
            row = {
                "base_model": base, "stage": stage,
                "row": f"{ratio_text(m['safety_ratio'])} safety mix{langs}",
                **_user_values(m), **published_values("main", stage, key),
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
                **_user_values(m), **published_values("main", stage, m["method"]),
            }  # fmt: skip
            rows.append(((g, 1, method_rank(m["method"]), len(rows)), row))
        ratios = {"mix0": 0.0, "mix15": options.reference_ratio, "mix100": 1.0}
        for pub in published.MAIN:
            if pub.stage != stage or pub.key in covered:
                continue
            row = {
                "base_model": base, "stage": stage, "row": pub.label, **_user_values(None),
                **published_values("main", stage, pub.key),
            }  # fmt: skip
            place = (0, ratios[pub.key]) if pub.key in ratios else (1, method_rank(pub.key))
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
                    "harm_rate": number(v.get("harm_rate")),
                    "baseline_harm_rate": number(v.get("baseline_harm_rate")),
                    "harm_change_pct": number(v.get("harm_change_pct")),
                    "harm_change_ci_low": interval(v.get("harm_change_pct_ci"))[0],
                    "harm_change_ci_high": interval(v.get("harm_change_pct_ci"))[1],
                    "win_rate_pct": number(v.get("win_rate_pct")),
                    "win_rate_ci_low": interval(v.get("win_rate_ci"), 100.0)[0],
                    "win_rate_ci_high": interval(v.get("win_rate_ci"), 100.0)[1],
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
                **published_values("language", stage, "mix15"),
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
                    **published_values("language", stage, key),
                }
            )  # fmt: skip
        for row in published.LANGUAGE:
            if row.stage == stage and row.key != "mix15" and row.key not in covered:
                rows.append(
                    {
                        "base_model": base, "stage": stage, "row": row.label, "method": "ties",
                        "merged_languages": "en fr es" if row.key == "en_fr_es" else " ".join(LANGUAGES),
                        **_user_values(None), **published_values("language", stage, row.key),
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
                            **published_values("position", stage, order),
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
