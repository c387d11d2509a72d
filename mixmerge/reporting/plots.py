"""The report's figures, drawn with matplotlib on the Agg canvas (no display, no pyplot state):
harm change vs win rate with the Pareto front, the weight-sensitivity curves, and a per-language
heatmap. Each function returns the PNG written, or None (with the reason) when there is no data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from mixmerge import LANGUAGES
from mixmerge.lineage import LANGUAGE_MERGE, MIX, OBJECTIVE_MERGE, POST_MERGE
from mixmerge.merging.methods import METHODS
from mixmerge.reporting import published
from mixmerge.reporting.labels import STAGES, method_name

METHOD_COLORS = {name: m.colour for name, m in METHODS.items()}  # the merge-method registry's
FAMILY_MARKERS = {MIX: "s", OBJECTIVE_MERGE: "^", LANGUAGE_MERGE: "P", POST_MERGE: "D"}
FAMILY_ORDER = {MIX: 0, OBJECTIVE_MERGE: 1, LANGUAGE_MERGE: 2, POST_MERGE: 3}
LABEL_ALL_UP_TO = 12  # points per panel


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def _panels(models: pd.DataFrame) -> list[tuple[object, str, pd.DataFrame]]:
    """(base model, stage, rows) for each group, SFT before DPO."""
    groups = []
    for (base, stage), rows in models.groupby(["base_model", "stage"], dropna=False):
        groups.append((None if pd.isna(base) else base, str(stage), rows))
    return sorted(groups, key=lambda g: (str(g[0]), STAGES.index(g[1]) if g[1] in STAGES else 9))


def _title(base: object, stage: str, several_bases: bool) -> str:
    return f"{stage.upper()}" + (f" — {base}" if several_bases else "")


def _style(row: pd.Series) -> tuple[str, str, str]:
    """(marker, colour, legend entry) of a model: mixes in blues by safety share, merges by method."""
    family = row["family"]
    if family == MIX:
        ratio = 0.5 if math.isnan(row["safety_ratio"]) else row["safety_ratio"]
        blue = (0.35 - 0.3 * ratio, 0.55 - 0.35 * ratio, 0.95 - 0.3 * ratio)
        return FAMILY_MARKERS[MIX], blue, "data mix"
    color = METHOD_COLORS.get(str(row["method"]), "tab:gray")
    name = method_name(row["method"])
    if family == OBJECTIVE_MERGE:
        return FAMILY_MARKERS[family], color, f"{name} merge"
    if family == LANGUAGE_MERGE:
        return FAMILY_MARKERS[family], color, f"language merge ({name})"
    if family == POST_MERGE:
        return FAMILY_MARKERS[family], color, f"{row['order']} ({name})"
    return "X", "tab:gray", "other"


def _shared_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend below the panels (entries of every panel, once each), so no point is hidden."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    if entries:
        fig.legend(
            entries.values(),
            entries.keys(),
            loc="outside lower center",
            ncols=min(4, len(entries)),
            fontsize=8,
        )


def _to_label(rows: pd.DataFrame) -> pd.Series:
    """Which points get a text label: all of them in a small panel; in a crowded one the mixes,
    the Pareto front and the language / post-merge models (every merge is in merges.csv)."""
    if len(rows) <= LABEL_ALL_UP_TO:
        return pd.Series(True, index=rows.index)
    return rows["pareto"] | rows["family"].isin([MIX, LANGUAGE_MERGE, POST_MERGE])


def _errors(row: pd.Series, prefix: str) -> list[list[float]] | None:
    """Asymmetric error bar from a model's own 95% bootstrap interval (None when it has none)."""
    value, low, high = (row[f"{prefix}_pct"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"])
    if any(pd.isna(v) for v in (value, low, high)):
        return None
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def pareto_plot(models: pd.DataFrame, path: Path, dpi: int, show_published: bool) -> Path | None:
    """Harm change (x, lower is better) against win rate (y, higher is better), one panel per
    stage, each point with its 95% bootstrap interval as error bars; the Pareto front of each
    panel is ringed and joined by a dashed line."""
    data = models.dropna(subset=["harm_change_pct", "win_rate_pct"])
    panels = _panels(data)
    if not panels:
        return None
    several = data["base_model"].nunique(dropna=False) > 1
    fig = Figure(figsize=(6.4 * len(panels), 5.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (base, stage, rows) in zip(axes, panels, strict=True):
        seen: set[str] = set()
        for _, row in rows.sort_values("family", key=lambda s: s.map(FAMILY_ORDER)).iterrows():
            marker, color, entry = _style(row)
            xerr, yerr = _errors(row, "harm_change"), _errors(row, "win_rate")
            if xerr is not None or yerr is not None:
                ax.errorbar(
                    row["harm_change_pct"], row["win_rate_pct"], xerr=xerr, yerr=yerr, fmt="none",
                    ecolor=color, elinewidth=0.8, alpha=0.45, capsize=2, zorder=2,
                )  # fmt: skip
            ax.scatter(
                row["harm_change_pct"], row["win_rate_pct"], marker=marker, color=color, s=60,
                edgecolors="white", linewidths=0.5, zorder=3, label=None if entry in seen else entry,
            )  # fmt: skip
            seen.add(entry)
        # One label per position: models with the same values share it ("mix15% / SLERP w0.5").
        labelled = rows[_to_label(rows)]
        for (harm, win), same in labelled.groupby(["harm_change_pct", "win_rate_pct"], sort=False):
            text = " / ".join(lbl.removeprefix(f"{stage.upper()} ") for lbl in same["label"])
            ax.annotate(text, (harm, win), xytext=(5, 4), textcoords="offset points", fontsize=7,
                        zorder=4)  # fmt: skip
        front = rows[rows["pareto"]].sort_values("harm_change_pct")
        ax.plot(front["harm_change_pct"], front["win_rate_pct"], "--", color="black", lw=1, zorder=2,
                label="Pareto front")  # fmt: skip
        ax.scatter(front["harm_change_pct"], front["win_rate_pct"], s=170, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=2)  # fmt: skip
        if show_published:
            pub = [r for r in published.MAIN if r.stage == stage]
            ax.scatter([r.harm_change_pct for r in pub], [r.win_rate_pct for r in pub], marker="o",
                       facecolors="none", edgecolors="gray", label=published.PUBLISHED_LABEL)  # fmt: skip
            for r in pub:
                ax.annotate(r.label, (r.harm_change_pct, r.win_rate_pct), xytext=(4, -8),
                            textcoords="offset points", fontsize=6, color="gray")  # fmt: skip
        ax.axhline(50, color="0.8", lw=0.8, zorder=1)
        ax.axvline(0, color="0.8", lw=0.8, zorder=1)
        ax.set_xlabel("harm change vs baseline (%)  ← safer")
        ax.set_ylabel("win rate vs baseline (%)  ↑ more helpful")
        ax.set_title(f"{_title(base, stage, several)}: harm vs helpfulness")
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    return _save(fig, path, dpi)


def weight_plot(models: pd.DataFrame, path: Path, dpi: int) -> Path | None:
    """Harm change and win rate against the safety weight, one line per merge method, with the
    15% mix of the same stage as a dashed reference line. Per-layer gradients are left out."""
    merges = models[(models["family"] == OBJECTIVE_MERGE) & models["weight_value"].notna()]
    panels = _panels(merges)
    if not panels:
        return None
    several = merges["base_model"].nunique(dropna=False) > 1
    fig = Figure(figsize=(5.2 * len(panels), 7.0), layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False, sharex=True)
    metrics = (
        ("harm_change_pct", "harm change (%)  ↓ safer"),
        ("win_rate_pct", "win rate (%)  ↑ better"),
    )
    for col, (base, stage, rows) in enumerate(panels):
        group = models[
            (models["stage"] == stage) & (models["base_model"].fillna("") == (base or ""))
        ]
        reference = group[group["name"] == group["reference"]]
        for row_i, (metric, ylabel) in enumerate(metrics):
            ax = axes[row_i][col]
            for method, lines in rows.groupby("method", sort=False):
                lines = lines.sort_values("weight_value")
                ax.plot(lines["weight_value"], lines[metric], marker="o",
                        color=METHOD_COLORS.get(str(method), "tab:gray"), label=method_name(method))  # fmt: skip
            if len(reference) and not np.isnan(reference[metric].iloc[0]):
                ax.axhline(reference[metric].iloc[0], ls="--", color="tab:blue", lw=1,
                           label=f"{reference['label'].iloc[0]} (reference)")  # fmt: skip
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if row_i == 0:
                ax.set_title(f"{_title(base, stage, several)}: sensitivity to the safety weight")
            else:
                ax.set_xlabel("safety weight w (the safety model's share)")
    _shared_legend(fig, axes.ravel())
    return _save(fig, path, dpi)


def heatmap(per_language: pd.DataFrame, models: pd.DataFrame, path: Path, dpi: int) -> Path | None:
    """Models × languages: harm change (left, green = safer) and win rate (right, green = better),
    each cell annotated; the last column is the average over languages."""
    if per_language.empty:
        return None
    order = models  # already in report order (tables.sort_key)
    several = models["base_model"].nunique(dropna=False) > 1
    names = list(order["name"])
    labels = [
        f"{r['label']} ({r['base_model']})" if several else r["label"] for _, r in order.iterrows()
    ]
    present = set(per_language["language"])
    langs = [c for c in LANGUAGES if c in present] + sorted(present - set(LANGUAGES))
    columns = [*langs, "avg"]
    height = 1.6 + 0.32 * len(names)
    width = 2.5 + 0.55 * len(columns)
    fig = Figure(figsize=(2.2 + 2 * width, height), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        ("harm_change_pct", "harm change vs baseline (%)", "RdYlGn_r", 0.0),
        ("win_rate_pct", "win rate vs baseline (%)", "RdYlGn", 50.0),
    )
    for ax, (metric, title, cmap, center) in zip(axes, panels, strict=True):
        table = per_language.pivot_table(
            index="name", columns="language", values=metric, aggfunc="first"
        )
        table = table.reindex(index=names, columns=langs)
        table["avg"] = order.set_index("name")[metric].reindex(names)
        values = table.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        spread = max(1.0, float(np.abs(finite - center).max())) if finite.size else 1.0
        norm = TwoSlopeNorm(vcenter=center, vmin=center - spread, vmax=center + spread)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        ax.set_facecolor("0.85")
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, "—" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(names)), labels, fontsize=8)
        ax.axvline(len(langs) - 0.5, color="black", lw=1)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path, dpi)
