"""Searches (`python -m mixmerge.search`) beside the grid. For each finished search (its
`search.json`), the front it re-evaluated on the report split, and every other evaluated model of
the same base — the grid merges of the same parents above all — re-scored on exactly the report
split's prompts from its own per-item judgements (a whole-set evaluation holds every prompt, so no
model is generated again). Both sides are then on the same prompts, judge, baseline and decoding:
the hypervolume of each, each grid method's best merge against the front, paired differences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mixmerge.artifacts import SearchSummary, read_artifact, read_json
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.metrics import rate
from mixmerge.evaluation.paired import Key, Verdicts, compare, excludes_zero
from mixmerge.merging.methods import METHODS, colour, display_name
from mixmerge.merging.weights import show
from mixmerge.reporting.collect import Evaluated, judge_label
from mixmerge.reporting.comparisons import evaluation_verdicts, load_verdicts
from mixmerge.reporting.markdown import with_ci
from mixmerge.reporting.selection import is_endpoint
from mixmerge.search.front import hypervolume

# The grid comparison is in rates (0–1), so the hypervolume's worst corner is harm 1, win 0.
RATE_METRICS = ("harm_rate", "win_rate")
REFERENCE = (1.0, 0.0)
# What must agree for two evaluations' judgements to be comparable item by item.
_GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "dtype")


@dataclass
class SearchSection:
    """One search as the report shows it."""

    name: str
    summary: SearchSummary | None  # None: search.json could not be read (the reason in notes)
    path: Path
    points: pd.DataFrame = field(default_factory=pd.DataFrame)  # search front, grid, others
    methods: pd.DataFrame = field(default_factory=pd.DataFrame)  # each grid method vs the front
    hypervolume: dict[str, float | None] = field(default_factory=dict)
    prompts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def restrict(v: Verdicts, harm_keys: set[Key], win_keys: set[Key]) -> Verdicts | None:
    """The verdicts on exactly these prompts, or None when some were not judged by this model."""
    if not harm_keys <= set(v.harm) or not win_keys <= set(v.wins):
        return None
    return Verdicts(
        harm={k: v.harm[k] for k in harm_keys},
        baseline_harm={k: v.baseline_harm[k] for k in harm_keys},
        wins={k: v.wins[k] for k in win_keys},
    )


def rates(v: Verdicts) -> tuple[float | None, float | None]:
    """Harm rate and win rate averaged over languages, as eval_results.json's `average` does."""

    def average(values: dict[Key, Any]) -> float | None:
        per = [
            rate([x for (lang, _), x in values.items() if lang == code]) for code in v.languages()
        ]
        defined = [r for r in per if r is not None]
        return sum(defined) / len(defined) if defined else None

    return average(v.harm), average(v.wins)


def _resolved(path: Any) -> str:
    return str(Path(str(path)).expanduser().resolve()) if path else ""


def _settings(results: dict[str, Any]) -> dict[str, Any]:
    generation = results.get("generation") or {}
    return {
        "judge": judge_label(results),
        "baseline": _resolved((results.get("baseline") or {}).get("path")),
        **{k: generation.get(k) for k in _GENERATION_KEYS},
    }


def _differs(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key in a:
        if a[key] != b.get(key):
            return f"{key} {b.get(key)} (the search's: {a[key]})"
    return None


def _parents(summary: SearchSummary) -> list[str]:
    return sorted(_resolved(m.path) for m in summary.parents)


def _is_grid(model: Evaluated, parents: list[str]) -> bool:
    prov = model.provenance
    if prov.get("kind") != "merge" or not parents:
        return False
    models = (prov.get("recipe") or {}).get("models") or []
    return sorted(_resolved(m.get("path")) for m in models) == parents


def _front_point(entry: Any, verdicts: Verdicts) -> dict[str, Any]:
    harm, win = rates(verdicts)
    return {
        "source": "search", "model": Path(entry.model).name if entry.model else f"trial {entry.trial}",
        "method": entry.method, "method_key": entry.candidate.method,
        "safety_weight": entry.safety_weight,
        "parameters": entry.parameters or "", "trial": entry.trial,
        "dev_harm": entry.dev_harm, "dev_win": entry.dev_win, "harm": harm, "win": win,
    }  # fmt: skip


def _model_point(model: Evaluated, source: str, verdicts: Verdicts) -> dict[str, Any]:
    harm, win = rates(verdicts)
    prov = model.provenance
    method = prov.get("method")
    own = {q.name for q in METHODS[method].params} if method in METHODS else set()
    params = {k: v for k, v in (prov.get("parameters") or {}).items() if k in own}
    return {
        "source": source, "model": model.name,
        "method": display_name(str(method)) if method else model.description.family,
        "method_key": str(method or ""),
        "safety_weight": show(prov["safety_weight"]) if prov.get("safety_weight") is not None else "—",
        "parameters": ", ".join(f"{k}={show(v)}" for k, v in sorted(params.items())),
        "trial": None, "dev_harm": None, "dev_win": None, "harm": harm, "win": win,
    }  # fmt: skip


def _dominates_or_matches(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["harm"] <= b["harm"] and a["win"] >= b["win"]


def _score(p: dict[str, Any]) -> float:
    return p["win"] - p["harm"]


def section(path: Path, models: Sequence[Evaluated], samples: int, seed: int) -> SearchSection:
    """One search's section: its front and the other models on its report split's prompts."""
    summary = read_artifact(SearchSummary, path)
    out = SearchSection(summary.study_name, summary, path)
    metrics = (summary.harm_metric, summary.win_metric)
    front_verdicts: list[tuple[Any, Verdicts]] = []
    reference: dict[str, Any] | None = None
    for entry in summary.front:
        results_path = Path(entry.report_results) if entry.report_results else None
        if results_path is None or not results_path.is_file():
            out.notes.append(f"trial {entry.trial}: its report-split evaluation is missing")
            continue
        results = read_json(results_path)
        judged, why = evaluation_verdicts(f"trial {entry.trial}", results_path, results)
        if judged is None:
            out.notes.append(str(why))
            continue
        reference = reference or _settings(results)
        front_verdicts.append((entry, judged))
    if not front_verdicts:
        out.notes.append("no front model's report-split judgements: nothing to compare")
        return out
    harm_keys = set(front_verdicts[0][1].harm)
    win_keys = set(front_verdicts[0][1].wins)
    out.prompts = {"redteam": len(harm_keys), "general": len(win_keys)}
    points = [_front_point(e, v) for e, v in front_verdicts]
    verdicts: dict[str, Verdicts] = {f"search:{e.trial}": v for e, v in front_verdicts}

    parents = _parents(summary)
    if metrics != RATE_METRICS:
        out.notes.append(
            f"the search optimised {metrics[0]} and {metrics[1]}: the grid comparison is made in "
            f"harm rate and win rate"
        )
    for model in models:
        grid = _is_grid(model, parents)
        why = _differs(reference or {}, _settings(model.results))
        if why is not None:
            if grid:
                out.notes.append(f"{model.name}: not comparable, evaluated with {why}")
            continue
        theirs, why = load_verdicts(model)
        if theirs is None:
            if grid:
                out.notes.append(f"{why} (not comparable)")
            continue
        mine = restrict(theirs, harm_keys, win_keys)
        if mine is None:
            if grid:
                out.notes.append(
                    f"{model.name}: its evaluation does not hold every report-split prompt "
                    "(evaluate it on the whole eval set: max_prompts_per_language=null)"
                )
            continue
        source = "grid" if grid else "other"
        if grid and is_endpoint(model.provenance.get("safety_weight")):
            source = "grid endpoint"
        points.append(_model_point(model, source, mine))
        verdicts[f"model:{model.name}"] = mine
    frame = pd.DataFrame(points)
    out.points = frame

    front = [p for p in points if p["source"] == "search"]
    grid = [p for p in points if p["source"] == "grid"]
    out.hypervolume = {
        "search": hypervolume([(p["harm"], p["win"]) for p in front], REFERENCE),
        "grid": hypervolume([(p["harm"], p["win"]) for p in grid], REFERENCE) if grid else None,
    }
    rows = []
    for method in sorted({p["method"] for p in grid}):
        best = max((p for p in grid if p["method"] == method), key=_score)
        matching = [p for p in front if _dominates_or_matches(p, best)]
        pick = max(matching or front, key=_score)
        diff = compare(
            verdicts[f"search:{pick['trial']}"], verdicts[f"model:{best['model']}"], samples, seed,
            names=(pick["model"], best["model"]),
        )["average"]  # fmt: skip
        rows.append({
            "method": method, "grid_best": best["model"], "grid_harm": best["harm"],
            "grid_win": best["win"], "front_trial": pick["trial"], "front_model": pick["model"],
            "front_harm": pick["harm"], "front_win": pick["win"], "matched": bool(matching),
            "delta_harm": diff["harm_rate"], "delta_harm_ci": diff.get("harm_rate_ci"),
            "delta_win": diff["win_rate"], "delta_win_ci": diff.get("win_rate_ci"),
        })  # fmt: skip
    out.methods = pd.DataFrame(rows)
    if not grid:
        out.notes.append(
            "no grid merge of the same parents evaluated on every prompt: run the grid "
            "(e.g. `python -m mixmerge.study experiment=mini_objective_merge`) to compare"
        )
    return out


def sections(
    paths: Sequence[Path], models: Sequence[Evaluated], samples: int, seed: int
) -> list[SearchSection]:
    out = []
    for path in sorted(paths):
        try:
            out.append(section(path, models, samples, seed))
        except MixmergeError as err:
            out.append(SearchSection(path.parent.name, None, path, notes=[str(err)]))
    return out


def points_frame(found: Sequence[SearchSection]) -> pd.DataFrame:
    """Every section's points, one CSV (search.csv)."""
    frames = [s.points.assign(search=s.name) for s in found if len(s.points)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def figure(s: SearchSection, path: Path, dpi: int) -> Path | None:
    """The search's front and the grid on the report split's prompts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not len(s.points):
        return None
    fig = Figure(figsize=(7.2, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pts = s.points
    grid = pts[pts["source"].isin(["grid", "grid endpoint"])]
    for (method, key), rows in grid.groupby(["method", "method_key"]):
        inner = rows[rows["source"] == "grid"]
        ax.scatter(inner["harm"], inner["win"], color=colour(str(key)), s=40, marker="o",
                   label=f"grid: {method}", zorder=3)  # fmt: skip
        for _, r in inner.iterrows():
            ax.annotate(f"w={r['safety_weight']}", (r["harm"], r["win"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    others = pts[pts["source"].isin(["other", "grid endpoint"])]
    if len(others):
        ax.scatter(others["harm"], others["win"], color="0.45", marker="s", s=30,
                   label="other models (mixes, parents)", zorder=3)  # fmt: skip
        for _, r in others.iterrows():
            ax.annotate(str(r["model"]), (r["harm"], r["win"]), fontsize=6, color="0.35",
                        xytext=(3, -8), textcoords="offset points")  # fmt: skip
    front = pts[pts["source"] == "search"].sort_values("harm")
    ax.plot(front["harm"], front["win"], "-*", color="black", ms=12, lw=1,
            label=f"search front, selected on dev (hypervolume {s.hypervolume.get('search', 0):.3f})",
            zorder=4)  # fmt: skip
    hv_grid = s.hypervolume.get("grid")
    if hv_grid is not None:
        ax.plot([], [], " ", label=f"grid 0<w<1: hypervolume {hv_grid:.3f}")
    ax.margins(x=0.12, y=0.08)  # room for the labels
    ax.set_xlabel("harm rate on the report split (lower is better)")
    ax.set_ylabel("win rate on the report split (higher is better)")
    ax.set_title(f"{s.name}: search front against the grid, same prompts", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _ci(value: Any, ci: Any) -> str:
    """A paired difference with its interval (the report's `with_ci`), bold when it excludes 0."""
    low, high = ci if ci else (None, None)
    text = with_ci(value, low, high, signed=True)
    return f"**{text}**" if value is not None and excludes_zero(ci) else text


def markdown(found: Sequence[SearchSection], figures: dict[str, str]) -> list[str]:
    """The report's "Searched merges" section."""
    if not found:
        return []
    lines = ["## Searched merges", ""]
    for s in found:
        lines.append(f"### {s.name}")
        lines.append("")
        if s.summary is None:
            lines += [f"- {n}" for n in s.notes] + [""]
            continue
        sm = s.summary
        lines.append(
            f"`{s.path.parent}`: {sm.sampler} over {sm.finished} trials selected on the "
            f"**{sm.dev_split}** split; its front ({len(sm.front)} merges) re-evaluated on the "
            f"**{sm.report_split}** split ({s.prompts.get('redteam', 0)} red-team and "
            f"{s.prompts.get('general', 0)} general prompts, never used to select). The grid "
            "merges of the same parents and the other models are re-scored on exactly those "
            "prompts from their per-item judgements (same judge, baseline and decoding)."
        )
        lines.append("")
        hv = s.hypervolume
        if hv.get("search") is not None:
            grid = "no grid merge to compare" if hv.get("grid") is None else f"{hv['grid']:.4f}"
            verdict = ""
            if hv.get("grid") is not None:
                verdict = (
                    " — the search's front covers more" if hv["search"] > hv["grid"]
                    else " — the grid covers more" if hv["search"] < hv["grid"] else " — equal"
                )  # fmt: skip
            lines.append(
                f"Hypervolume (area dominated in harm rate × win rate, from harm 1, win 0; "
                f"larger is better): **search {hv['search']:.4f}**, grid (0 < w < 1) {grid}{verdict}."
            )
            lines.append("")
        if len(s.methods):
            matched = int(s.methods["matched"].sum())
            lines.append(
                f"Each grid method's best merge (largest win − harm on these prompts) against the "
                f"front: **{matched} of {len(s.methods)}** matched or dominated by a front merge. "
                "Δ = front − grid in points, paired over the prompts, 95% interval; **bold** "
                "excludes 0 (a difference the prompts can tell)."
            )
            lines.append("")
            lines.append(
                "| method | best grid merge | harm | win | front merge | harm | win | matched or dominated | Δ harm | Δ win |"
            )
            lines.append("|---|---|---:|---:|---|---:|---:|---|---:|---:|")
            for _, r in s.methods.iterrows():
                lines.append(
                    f"| {r['method']} | {r['grid_best']} | {r['grid_harm']:.3f} | {r['grid_win']:.3f} "
                    f"| {r['front_model']} | {r['front_harm']:.3f} | {r['front_win']:.3f} "
                    f"| {'yes' if r['matched'] else 'no'} | {_ci(r['delta_harm'], r['delta_harm_ci'])} "
                    f"| {_ci(r['delta_win'], r['delta_win_ci'])} |"
                )
            lines.append("")
        if len(s.points):
            lines.append(
                "| source | model | method | safety weight | parameters | dev harm | dev win | harm | win |"
            )
            lines.append("|---|---|---|---|---|---:|---:|---:|---:|")
            fmt = lambda v: "—" if v is None or v != v else f"{v:.3f}"  # noqa: E731
            order = {"search": 0, "grid": 1, "grid endpoint": 2, "other": 3}
            for _, r in s.points.sort_values(
                ["source", "harm"], key=lambda c: c.map(order) if c.name == "source" else c
            ).iterrows():
                lines.append(
                    f"| {r['source']} | {r['model']} | {r['method']} | {r['safety_weight']} | "
                    f"{r['parameters'] or '—'} | {fmt(r['dev_harm'])} | {fmt(r['dev_win'])} | "
                    f"{fmt(r['harm'])} | {fmt(r['win'])} |"
                )
            lines.append("")
        if s.name in figures:
            lines += [f"![{s.name}: search front against the grid]({figures[s.name]})", ""]
        lines += [f"- {n}" for n in s.notes]
        if s.notes:
            lines.append("")
    return lines
