"""What the report could not show, in words: models without evaluations, study rows not yet run,
figures without data, and mixed judges or baselines that make rows hard to compare."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from mixmerge.reporting.collect import Collection
from mixmerge.reporting.labels import STAGES, method_name, ratio_text
from mixmerge.reporting.selection import Options

_LIST_AT_MOST = 12


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_AT_MOST])
    return shown + (f" and {len(items) - _LIST_AT_MOST} more" if len(items) > _LIST_AT_MOST else "")


def _unrun(frame: pd.DataFrame, what: str, by: str = "stage") -> list[str]:
    """One line per group listing the study's rows that have no evaluated model."""
    lines = []
    empty = frame[frame["name"].isna()]
    for key, rows in empty.groupby(by, sort=False):
        group = method_name(key) if by == "method" else str(key).upper()
        lines.append(f"{what} ({group}): not evaluated yet: {_names(list(rows['row']))}")
    return lines


def missing_items(
    found: Collection,
    frames: Mapping[str, pd.DataFrame],
    skipped_figures: Mapping[str, str],
    options: Options,
) -> list[str]:
    """Bullet lines (without the bullet) for the report's "What is missing" section."""
    models = frames["models"]
    lines = []
    if models.empty:
        searched = ", ".join(str(p) for p in found.searched) or "(no existing search folder)"
        lines.append(
            f"no evaluated model with provenance under {searched}: train or merge models, then "
            "`python -m mixmerge.evaluate model_ref=<name>`"
        )
    if found.not_evaluated:
        names = [name for name, _ in found.not_evaluated]
        lines.append(
            f"{len(names)} model(s) have no eval_results.json (run `python -m mixmerge.evaluate "
            f"model_ref=<name>`): {_names(names)}"
        )
    if found.without_provenance:
        refs = [f"{ref} ({path})" for ref, path in found.without_provenance]
        lines.append(
            f"evaluations of models with no mixmerge.json under the search folders, left out: {_names(refs)}"
        )
    for name, why in found.filtered_out:
        lines.append(f"{name}: left out ({why})")
    if found.split_only:
        lines.append(
            f"{len(found.split_only)} model(s) evaluated only on a dev or report split of the prompts "
            f"(a search's), not beside whole-set evaluations in these tables: {_names(found.split_only)}"
            + ("; a finished search's front is in *Searched merges*" if found.searches else "")
        )
    present = set(models["stage"]) if not models.empty else set()
    for stage in STAGES:
        if models.empty:
            break
        if stage not in present:
            lines.append(f"{stage.upper()}: no evaluated {stage.upper()} model")
    for _, row in models.drop_duplicates(["base_model", "stage"]).iterrows():
        if row["reference"] is None or pd.isna(row["reference"]):
            base = f" ({row['base_model']})" if row["base_model"] else ""
            lines.append(
                f"{row['stage'].upper()}{base}: "
                f"no evaluated multilingual {ratio_text(options.reference_ratio)} safety mix, so the Δ columns are empty"
            )
    merges = frames["merges"]
    if options.merge_weights == "best" and not options.include_endpoints and len(merges):
        for (_, stage, method), rows in merges.groupby(
            ["base_model", "stage", "method"], dropna=False, sort=False
        ):
            if not rows["selected"].any() and rows["endpoint"].all():
                lines.append(
                    f"main table ({str(stage).upper()}): {method_name(method)} has only w = 0 / 1 "
                    "evaluated, a parent's weights rather than a merge (`best_weight.include_endpoints=true` shows them)"
                )
    if not models.empty:
        lines += _unrun(frames["main"], "main table")
        lines += _unrun(frames["language"], "language merges")
        lines += _unrun(frames["position"], "merge position", by="method")
    for name, why in skipped_figures.items():
        lines.append(f"{name}: not drawn ({why})")
    return lines


def warnings(models: pd.DataFrame) -> list[str]:
    """Reasons rows may not be comparable: several judges, baselines or language sets."""
    lines = []
    if models.empty:
        return lines
    for column, what, fix in (
        ("judge", "judges", "pass select.judge=<name> to report one judge's evaluations"),
        ("baseline", "baselines", "evaluate every model against the same baseline"),
        ("decoding", "decodings", "evaluate every model with the same generation settings"),
        ("base_model", "base models", "pass select.base_model=<name> to report one"),
        ("eval_languages", "sets of evaluated languages", "averages cover different languages"),
    ):
        values = sorted(str(v) for v in models[column].dropna().unique())
        if len(values) > 1:
            lines.append(f"results come from {len(values)} {what} ({'; '.join(values)}): {fix}")
    if "fluency_below" in models:
        for name, below in zip(models["name"], models["fluency_below"], strict=True):
            if below:
                lines.append(
                    f"{name}: too few fluent answers ({below}): its harm and win rates in these "
                    "languages measure noise, not safety or quality (and the fluency checks are "
                    "an upper bound: careful reading finds fewer coherent answers, "
                    "docs/models.md)"
                )
    return lines
