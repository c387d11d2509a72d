"""The Pareto front of harm (down) against win rate (up), which models to keep, and the front's
table (CSV, Markdown) and figure in the run directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixmerge.artifacts import ParetoRow
from mixmerge.io import write_text_atomic
from mixmerge.merging.methods import colour, display_name
from mixmerge.merging.weights import show


@dataclass(frozen=True)
class Point:
    """A finished trial as the front sees it."""

    number: int
    method: str
    harm: float
    win: float
    candidate: dict[str, Any]
    model: str | None


def dominates(a: Point, b: Point) -> bool:
    """a is no worse in both objectives and better in one (harm minimised, win maximised)."""
    return a.harm <= b.harm and a.win >= b.win and (a.harm < b.harm or a.win > b.win)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points, by harm then win."""
    front = [p for p in points if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda p: (p.harm, -p.win, p.number))


def hypervolume(
    points: Sequence[tuple[float, float]], ref: tuple[float, float] = (1.0, 0.0)
) -> float:
    """The area of the (harm, win) plane that `points` dominate, bounded by the worst corner `ref`
    (harm 1, win 0 for rates): harm is minimised and win maximised, so a point (h, w) covers the
    rectangle [h, ref_h] × [ref_w, w]. One number for a whole front; larger is better, and a
    front that dominates another has at least its hypervolume. Points outside `ref` add nothing."""
    inside = sorted((h, w) for h, w in points if h < ref[0] and w > ref[1])
    area, best_win = 0.0, ref[1]
    for i, (h, w) in enumerate(inside):  # by harm, ascending: a strip from h to the next harm
        best_win = max(best_win, w)
        right = inside[i + 1][0] if i + 1 < len(inside) else ref[0]
        area += (right - h) * (best_win - ref[1])
    return area


def best_per_method(points: Sequence[Point]) -> dict[str, Point]:
    """Each method's best trial by win − harm (one number per method; ties: the earlier trial)."""
    best: dict[str, Point] = {}
    for p in sorted(points, key=lambda p: p.number):
        if p.method not in best or p.win - p.harm > best[p.method].win - best[p.method].harm:
            best[p.method] = p
    return best


def keep_numbers(points: Sequence[Point], keep: str) -> set[int]:
    """The trials whose models stay on disk under `search.keep` (pareto | all | none)."""
    if keep == "all":
        return {p.number for p in points}
    if keep == "none":
        return set()
    return {p.number for p in pareto_front(points)} | {
        p.number for p in best_per_method(points).values()
    }


def _weight(candidate: dict[str, Any]) -> str:
    w = candidate.get("safety_weight")
    return "—" if w is None else show(w)


def _params(candidate: dict[str, Any]) -> str:
    return ", ".join(f"{k}={show(v)}" for k, v in sorted(candidate.get("params", {}).items()))


def front_rows(front: Sequence[Point], report: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per front trial: the merge, its dev result and its report result."""
    rows = []
    for p in front:
        r = report.get(p.number, {})
        row = ParetoRow(
            **{
                "trial": p.number,
                "method": display_name(p.method),
                "safety_weight": _weight(p.candidate),
                "parameters": _params(p.candidate),
                "dev_harm": p.harm,
                "dev_win": p.win,
                "report_harm": r.get("harm"),
                "report_win": r.get("win"),
                "model": p.model or "",
            }
        )
        rows.append(row.model_dump())
    return rows


def write_tables(rows: list[dict[str, Any]], run_dir: Path, metrics: tuple[str, str]) -> list[Path]:
    """pareto.csv and pareto.md in the run directory."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    csv = run_dir / "pareto.csv"
    write_text_atomic(csv, frame.to_csv(index=False))
    harm, win = metrics
    lines = [
        f"# Pareto front: {harm} (lower is better) against {win} (higher is better)",
        "",
        "Selected on the dev split; `report` columns are the same models on the report split.",
        "",
        f"| trial | method | safety weight | parameters | dev {harm} | dev {win} | report {harm} | report {win} |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        lines.append(
            f"| {r['trial']} | {r['method']} | {r['safety_weight']} | {r['parameters'] or '—'} | "
            f"{fmt(r['dev_harm'])} | {fmt(r['dev_win'])} | {fmt(r['report_harm'])} | {fmt(r['report_win'])} |"
        )
    md = run_dir / "pareto.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return [csv, md]


def write_figure(
    points: Sequence[Point],
    front: Sequence[Point],
    report: dict[int, dict[str, Any]],
    path: Path,
    metrics: tuple[str, str],
) -> Path:
    """Every trial (dev split) coloured by method, the dev front, and the front on the report split."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method in sorted({p.method for p in points}):
        mine = [p for p in points if p.method == method]
        ax.scatter([p.harm for p in mine], [p.win for p in mine], color=colour(method), s=30,
                   alpha=0.8, label=display_name(method), zorder=3)  # fmt: skip
    if front:
        ax.plot([p.harm for p in front], [p.win for p in front], "--", color="black", lw=1,
                label="front (dev)", zorder=2)  # fmt: skip
    shown = [(p, report[p.number]) for p in front if p.number in report]
    if shown:
        ax.scatter([r["harm"] for _, r in shown], [r["win"] for _, r in shown], marker="*",
                   s=140, color="black", label="front on the report split", zorder=4)  # fmt: skip
        for p, r in shown:
            ax.annotate("", xy=(r["harm"], r["win"]), xytext=(p.harm, p.win),
                        arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.7})  # fmt: skip
    ax.set_xlabel(f"{metrics[0]} (lower is better)")
    ax.set_ylabel(f"{metrics[1]} (higher is better)")
    ax.set_title(f"Merge search: {len(points)} trials, {len(front)} on the front")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    return path
