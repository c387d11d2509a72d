"""`report.md`: the tables as Markdown, the figures, what is missing, and how to read them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mixmerge import LANGUAGES
from mixmerge.reporting import published
from mixmerge.reporting.labels import method_name, ratio_text
from mixmerge.reporting.selection import Options, best_rule_text

DASH = "—"


def fmt(value: Any, signed: bool = False) -> str:
    """One decimal; signed for changes; a dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def with_ci(value: Any, low: Any, high: Any, signed: bool = False) -> str:
    text = fmt(value, signed)
    if text == DASH or fmt(low) == DASH:
        return text
    return f"{text} [{fmt(low, signed)}, {fmt(high, signed)}]"


def delta(value: Any, low: Any, high: Any, significant: Any) -> str:
    """A Δ with its paired 95% interval, starred when the interval excludes 0:
    `-12.5 [-20.1, -4.3]*`."""
    text = with_ci(value, low, high, signed=True)
    return text + "*" if text != DASH and fmt(low) != DASH and bool(significant) else text


_LIST_AT_MOST = 6


def _listed(labels: Sequence[str]) -> str:
    shown = ", ".join(labels[:_LIST_AT_MOST])
    more = len(labels) - _LIST_AT_MOST
    return shown + (f" and {more} more" if more > 0 else "")


def distinguishable(rows: pd.DataFrame, labels: Sequence[str], against: str) -> str:
    """One sentence, computed from the table's rows: which Δ intervals exclude 0 (harm, win) and
    that the others cannot be told apart from 0 with these prompts."""
    compared = [
        (label, r)
        for label, (_, r) in zip(labels, rows.iterrows(), strict=True)
        if not (pd.isna(r["delta_harm_ci_low"]) and pd.isna(r["delta_win_ci_low"]))
    ]
    if not compared:
        return (
            f"No paired intervals against {against}: no pair of these models has per-item "
            "judgements on the same prompts (see the notes above the main table)."
        )
    harm = [label for label, r in compared if r["delta_harm_sig"]]
    win = [label for label, r in compared if r["delta_win_sig"]]
    if not harm and not win:
        return (
            f"None of the {len(compared)} differences from {against} is distinguishable: every "
            "paired 95% interval, of harm change and of win rate, contains 0."
        )
    parts = [
        f"harm change for {_listed(harm)}" if harm else "no harm change",
        f"win rate for {_listed(win)}" if win else "no win rate",
    ]
    return (
        f"Against {against}, the paired 95% interval excludes 0 (marked *) for {parts[0]} and "
        f"for {parts[1]}; of the {len(compared)} rows compared, every other difference is within "
        "the noise of these prompts."
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _name(row: pd.Series) -> str:
    return f"`{row['name']}`" if isinstance(row["name"], str) else "*(not evaluated)*"


def _values(row: pd.Series) -> list[str]:
    return [
        with_ci(
            row["harm_change_pct"], row["harm_change_ci_low"], row["harm_change_ci_high"], True
        ),
        with_ci(row["win_rate_pct"], row["win_rate_ci_low"], row["win_rate_ci_high"]),
        delta(row["delta_harm_pct"], row["delta_harm_ci_low"], row["delta_harm_ci_high"],
              row["delta_harm_sig"]),
        delta(row["delta_win_pct"], row["delta_win_ci_low"], row["delta_win_ci_high"],
              row["delta_win_sig"]),
    ]  # fmt: skip


def _published_values(row: pd.Series) -> list[str]:
    return [
        fmt(row["published_harm_change_pct"], True),
        fmt(row["published_win_rate_pct"]),
        fmt(row["published_delta_harm_pct"], True),
        fmt(row["published_delta_win_pct"], True),
    ]


VALUE_HEADERS = [
    "harm change % [95% CI]", "win rate % [95% CI]", "Δ harm [paired 95% CI]",
    "Δ win [paired 95% CI]",
]  # fmt: skip
PUBLISHED_HEADERS = ["pub. harm", "pub. win", "pub. Δ harm", "pub. Δ win"]


def main_table(main: pd.DataFrame, several_bases: bool) -> str:
    headers = [*(["base"] if several_bases else []), "stage", "row", "model", "w", *VALUE_HEADERS,
               "Pareto", *PUBLISHED_HEADERS]  # fmt: skip
    rows = [
        [*([r["base_model"]] if several_bases else []), r["stage"].upper(), r["row"], _name(r),
         r["safety_weight"], *_values(r), "★" if r["pareto"] else "", *_published_values(r)]
        for _, r in main.iterrows()
    ]  # fmt: skip
    return table(headers, rows)


def merges_table(merges: pd.DataFrame, several_bases: bool) -> str:
    headers = [*(["base"] if several_bases else []), "stage", "method", "w", "model", *VALUE_HEADERS,
               "Pareto", "in main table"]  # fmt: skip
    rows = [
        [*([r["base_model"]] if several_bases else []), r["stage"].upper(), method_name(r["method"]),
         r["safety_weight"], _name(r), *_values(r), "★" if r["pareto"] else "",
         "yes" if r["selected"] else ""]
        for _, r in merges.iterrows()
    ]  # fmt: skip
    return table(headers, rows)


def per_language_tables(per_language: pd.DataFrame, models: pd.DataFrame) -> list[str]:
    """One table per stage: models × languages, each cell `harm change / win rate`."""
    out = []
    present = set(per_language["language"])
    langs = [c for c in LANGUAGES if c in present] + sorted(present - set(LANGUAGES))
    for stage, rows in models.groupby("stage", sort=False):
        headers = ["model", *langs, "average"]
        body = []
        for _, m in rows.iterrows():
            cells = per_language[per_language["name"] == m["name"]].set_index("language")
            body.append(
                [f"{m['label']} (`{m['name']}`)"]
                + [
                    f"{fmt(cells.at[c, 'harm_change_pct'], True)} / {fmt(cells.at[c, 'win_rate_pct'])}"
                    if c in cells.index
                    else DASH
                    for c in langs
                ]
                + [f"{fmt(m['harm_change_pct'], True)} / {fmt(m['win_rate_pct'])}"]
            )
        out.append(
            f"**{str(stage).upper()}** (harm change % / win rate %)\n\n" + table(headers, body)
        )
    return out


def language_table(frame: pd.DataFrame) -> str:
    headers = ["stage", "row", "model", "merged languages", *VALUE_HEADERS, *PUBLISHED_HEADERS]
    rows = [
        [
            r["stage"].upper(),
            r["row"],
            _name(r),
            r["merged_languages"],
            *_values(r),
            *_published_values(r),
        ]
        for _, r in frame.iterrows()
    ]
    return table(headers, rows)


def position_table(frame: pd.DataFrame) -> str:
    headers = [
        "method",
        "w",
        "stage order",
        "model",
        *VALUE_HEADERS,
        "pub. harm (SLERP)",
        "pub. win (SLERP)",
    ]
    rows = [
        [method_name(r["method"]), r["safety_weight"], r["row"], _name(r), *_values(r),
         fmt(r["published_harm_change_pct"], True), fmt(r["published_win_rate_pct"])]
        for _, r in frame.iterrows()
    ]  # fmt: skip
    return table(headers, rows)


def parents_table(frame: pd.DataFrame, several_bases: bool) -> str:
    headers = [*(["base"] if several_bases else []), "stage", "merge", "against", "parent",
               "Δ harm [paired 95% CI]", "Δ win [paired 95% CI]"]  # fmt: skip
    rows = [
        [*([r["base_model"]] if several_bases else []), r["stage"].upper(), r["label"],
         r["parent_role"], f"{r['parent_label']} (`{r['parent']}`)",
         delta(r["delta_harm_pct"], r["delta_harm_ci_low"], r["delta_harm_ci_high"], r["delta_harm_sig"]),
         delta(r["delta_win_pct"], r["delta_win_ci_low"], r["delta_win_ci_high"], r["delta_win_sig"])]
        for _, r in frame.iterrows()
    ]  # fmt: skip
    return table(headers, rows)


def judgements_list(models: pd.DataFrame) -> list[str]:
    """One line per model: where its per-item judgements are (prompt, responses, verdicts, reasons)."""
    lines = []
    for _, m in models.iterrows():
        path = m["judgements_file"]
        where = f"[`{path}`](<{path}>)" if isinstance(path, str) and path else "not found"
        lines.append(f"- {m['label']} (`{m['name']}`): {where}")
    return lines


def published_tables(frame: pd.DataFrame) -> str:
    parts = []
    titles = {
        "main": "Main table",
        "language": "Language merge (SFT, TIES)",
        "position": "Merge position (SLERP)",
    }
    for name, rows in frame.groupby("table", sort=False):
        body = [
            [r["stage"].upper(), r["row"], fmt(r["published_harm_change_pct"], True),
             fmt(r["published_win_rate_pct"]), fmt(r["published_delta_harm_pct"], True),
             fmt(r["published_delta_win_pct"], True)]
            for _, r in rows.iterrows()
        ]  # fmt: skip
        parts.append(
            f"**{titles.get(str(name), name)}**\n\n"
            + table(["stage", "row", "harm change %", "win rate %", "Δ harm", "Δ win"], body)
        )
    return "\n\n".join(parts)


def render(
    frames: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str],
    missing: Sequence[str],
    warnings: Sequence[str],
    options: Options,
    header: Mapping[str, str],
    searched: Sequence[str] = (),
) -> str:
    """The whole report.md, section by section (`searched`: the searches' section, already
    rendered by reporting/searches.py)."""
    models = frames["models"]
    view = _View(
        frames=frames,
        figures=figures,
        several=models["base_model"].nunique(dropna=False) > 1,
        ref=f"{ratio_text(options.reference_ratio)} safety mix",
        refs=set(models["reference"].dropna()) if len(models) else set(),
    )
    selection = "every weight" if options.merge_weights == "all" else best_rule_text(options)
    out = [
        *_introduction(header, len(models), view.ref),
        *_caution(frames, warnings),
        *_missing(missing),
        *_main_section(view, selection),
        *_merges_section(view),
        *_parents_section(view),
        *_per_language_section(view),
        *_language_section(view),
        *_position_section(view),
        *searched,
        *_judgements_section(models),
        f"## Published numbers — {published.PUBLISHED_LABEL}",
        "",
        published_tables(frames["published"]),
        "",
        "## Files",
        "",
        *(f"- `{name}`" for name in header["files"].split()),
        "",
    ]
    return "\n".join(out)


@dataclass(frozen=True)
class _View:
    """What every section of report.md needs."""

    frames: Mapping[str, pd.DataFrame]
    figures: Mapping[str, str]
    several: bool  # more than one base model: tables name it
    ref: str  # "15% safety mix"
    refs: set[str]  # the reference mixes' names (not repeated in the Δ summaries)

    def figure(self, key: str, alt: str) -> list[str]:
        return [f"![{alt}]({self.figures[key]})", ""] if key in self.figures else []


def _introduction(header: Mapping[str, str], n_models: int, ref: str) -> list[str]:
    return [
        "# mixmerge report",
        "",
        f"{header['created']} · {n_models} evaluated model(s) · judge(s): {header['judges']} · "
        f"decoding: {header.get('decodings', '—')} · searched: {header['searched']}"
        + (f" (not found: {header['not_found']})" if header.get("not_found") else ""),
        "",
        "**How to read it.** *Harm change* is the relative change (%) in harmful responses to red-team "
        "prompts against the baseline model (more negative is safer; −50 means half as many harmful "
        "responses). *Win rate* is the share (%) of general prompts on which the judge prefers the model "
        "to the baseline (ties count half; 50 means as good as the baseline). Both are unweighted "
        "averages over the evaluated languages, with bootstrap 95% confidence intervals in brackets. "
        f"*Δ* is the difference in percentage points from the {ref} of the same stage (Δ harm < 0 and "
        "Δ win > 0 are improvements); its interval is a *paired* bootstrap over the prompts both models "
        "answered, and * marks a Δ whose interval excludes 0 (a difference these prompts can tell "
        "apart; the others are within the noise). ★ marks the Pareto front: no other model of the stage is both "
        f"safer and more helpful. Columns *pub.* are {published.PUBLISHED_LABEL}, from {published.SOURCE}: "
        "a different model, data scale and judge, so compare directions and orderings, not values.",
        "",
    ]


def _caution(frames: Mapping[str, pd.DataFrame], warnings: Sequence[str]) -> list[str]:
    notes = list(frames["paired"].attrs.get("notes", []))
    if notes:
        warnings = [*warnings, *(f"no paired interval: {n}" for n in notes[:12])]
        if len(notes) > 12:
            warnings.append(f"… and {len(notes) - 12} more pairs without a paired interval")
    return ["**Caution.**", "", *(f"- {w}" for w in warnings), ""] if warnings else []


def _missing(missing: Sequence[str]) -> list[str]:
    items = [f"- {m}" for m in missing] or [
        "Nothing: every row of the study has an evaluated model."
    ]
    return ["## What is missing", "", *items]


def _main_section(view: _View, selection: str) -> list[str]:
    table_frame = view.frames["main"]
    main = table_frame[~table_frame["name"].isin(view.refs) & table_frame["name"].notna()]
    labels = [f"{r['row']} ({r['stage'].upper()})" for _, r in main.iterrows()]
    return [
        "",
        "## Main table",
        "",
        f"Mixes trained on several languages, and merges: {selection}.",
        "",
        main_table(table_frame, view.several),
        "",
        distinguishable(main, labels, f"the {view.ref}"),
        "",
        *view.figure("pareto", "harm change vs win rate, Pareto front"),
    ]


def _merges_section(view: _View) -> list[str]:
    merges = view.frames["merges"]
    out = ["## Merges by weight", ""]
    out += [
        merges_table(merges, view.several) if len(merges) else "No objective merge evaluated.",
        "",
    ]
    if len(merges):
        out += [distinguishable(merges, list(merges["label"]), f"the {view.ref}"), ""]
    return out


def _parents_section(view: _View) -> list[str]:
    parents = view.frames["parents"]
    out = ["## Merges against their parents", ""]
    if len(parents):
        labels = [f"{r['label']} vs its {r['parent_role']}" for _, r in parents.iterrows()]
        out += [
            "Each objective merge minus each of its evaluated parents (the general and the safety "
            "model), paired over the prompts both answered.",
            "",
            parents_table(parents, view.several),
            "",
            distinguishable(parents, labels, "their parents"),
            "",
        ]
    else:
        out += ["No objective merge with an evaluated parent.", ""]
    return [*out, *view.figure("weight_sensitivity", "weight sensitivity")]


def _per_language_section(view: _View) -> list[str]:
    per_language = view.frames["per_language"]
    out = ["## Per-language results", ""]
    if len(per_language):
        out += ["\n\n".join(per_language_tables(per_language, view.frames["models"])), ""]
    else:
        out += ["No evaluated model.", ""]
    return [*out, *view.figure("heatmap", "per-language heatmap")]


def _language_section(view: _View) -> list[str]:
    language = view.frames["language"]
    out = [
        "## Language merges",
        "",
        language_table(language) if len(language) else "No evaluated model.",
        "",
    ]
    rows = language[~language["name"].isin(view.refs) & language["name"].notna()]
    if len(rows):
        out += [distinguishable(rows, list(rows["row"]), f"the multilingual {view.ref}"), ""]
    return out


def _position_section(view: _View) -> list[str]:
    frame = view.frames["position"]
    out = [
        "## Merge position",
        "",
        "Stage order from the provenance chain: a merge of DPO models is DPO-then-merge; a DPO model "
        "whose parent is a merge is merge-then-DPO.",
        "",
        position_table(frame) if len(frame) else "No evaluated model.",
        "",
    ]
    position = frame[frame["name"].notna()]
    if len(position):
        labels = [f"{r['order']} ({method_name(r['method'])})" for _, r in position.iterrows()]
        out += [distinguishable(position, labels, f"the {view.ref}"), ""]
    return out


def _judgements_section(models: pd.DataFrame) -> list[str]:
    return [
        "## Per-item judgements",
        "",
        "Every prompt of each evaluation with both responses, each verdict and the judge's reason "
        "(`judgements.jsonl`, one JSON record per line):",
        "",
        *(judgements_list(models) if len(models) else ["No evaluated model."]),
        "",
    ]
