"""The report run, top to bottom: find evaluated models → tables → figures → report.md + CSV in
the run directory and in a stable `latest` folder (atomically) → loggers."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, ListConfig

from mixmerge.errors import MixmergeError
from mixmerge.io import atomic_dir, write_json_atomic
from mixmerge.reporting import markdown, plots, searches, tables
from mixmerge.reporting.collect import Collection, Evaluated, collect
from mixmerge.reporting.comparisons import Comparisons
from mixmerge.reporting.labels import sort_key
from mixmerge.reporting.loggers import log_report
from mixmerge.reporting.missing import missing_items, warnings
from mixmerge.reporting.published_join import published_frame
from mixmerge.reporting.selection import BEST_RULES, Options, merges_frame

CSV_FILES = {
    "models": "models.csv",
    "main": "main.csv",
    "merges": "merges.csv",
    "per_language": "per_language.csv",
    "language": "language_merges.csv",
    "position": "merge_position.csv",
    "published": "published.csv",
    "parents": "merge_parents.csv",
    "paired": "paired.csv",
}
REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"


def check_config(cfg: DictConfig) -> Options:
    """Checks Hydra cannot do itself, before anything is read."""
    dirs = cfg.get("search_dirs")
    if (
        not isinstance(dirs, ListConfig)
        or not dirs
        or not all(isinstance(d, str) and d for d in dirs)
    ):
        raise MixmergeError(f"search_dirs={dirs}: expected a non-empty list of folders")
    ratio = cfg.reference_safety_ratio
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
        raise MixmergeError(f"reference_safety_ratio={ratio}: expected a number in [0, 1]")
    if cfg.merge_weights not in ("best", "all"):
        raise MixmergeError(f"merge_weights={cfg.merge_weights}: expected best or all")
    rule, endpoints = cfg.best_weight.rule, cfg.best_weight.include_endpoints
    if rule not in BEST_RULES:
        raise MixmergeError(f"best_weight.rule={rule}: expected one of {', '.join(BEST_RULES)}")
    if not isinstance(endpoints, bool):
        raise MixmergeError(f"best_weight.include_endpoints={endpoints}: expected true or false")
    samples, seed = cfg.paired.samples, cfg.paired.seed
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise MixmergeError(
            f"paired.samples={samples}: expected an integer >= 0 (0 = no paired intervals)"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MixmergeError(f"paired.seed={seed}: expected an integer")
    dpi = cfg.plots.dpi
    if not isinstance(dpi, int) or isinstance(dpi, bool) or not 30 <= dpi <= 600:
        raise MixmergeError(f"plots.dpi={dpi}: expected an integer in [30, 600]")
    return Options(
        reference_ratio=float(ratio),
        merge_weights=str(cfg.merge_weights),
        best_rule=str(rule),
        include_endpoints=endpoints,
        position_method=str(cfg.position_method),
        paired_samples=samples,
        paired_seed=seed,
    )


def build_frames(models: Sequence[Evaluated], options: Options) -> dict[str, pd.DataFrame]:
    """Every table of the report, keyed as in CSV_FILES."""
    models = sorted(models, key=sort_key)
    comparisons = Comparisons(options.paired_samples, options.paired_seed)
    frame = tables.model_frame(models, options, comparisons)
    merges = merges_frame(frame, options)
    parents = tables.parents_frame(models, frame, comparisons)
    frames = {
        "models": frame,
        "main": tables.main_frame(frame, merges, options),
        "merges": merges,
        "per_language": tables.per_language_frame(models, frame),
        "language": tables.language_frame(frame, options),
        "position": tables.position_frame(frame, merges, options),
        "published": published_frame(),
        "parents": parents,
        "paired": comparisons.frame(),
    }
    frames["paired"].attrs["notes"] = comparisons.notes()
    return frames


def draw(
    frames: Mapping[str, pd.DataFrame], out: Path, cfg: DictConfig
) -> tuple[dict[str, Path], dict[str, str]]:
    """The PNGs, and the reason for each one not drawn."""
    models, dpi = frames["models"], cfg.plots.dpi
    made = {
        "pareto": plots.pareto_plot(
            models, out / "pareto.png", dpi, bool(cfg.plots.show_published)
        ),
        "weight_sensitivity": plots.weight_plot(models, out / "weight_sensitivity.png", dpi),
        "heatmap": plots.heatmap(frames["per_language"], models, out / "heatmap.png", dpi),
    }
    why = {
        "pareto": "no model with both a harm change and a win rate",
        "weight_sensitivity": "no evaluated objective merge with a single safety weight",
        "heatmap": "no evaluated model",
    }
    return (
        {k: p for k, p in made.items() if p is not None},
        {f"{k}.png": why[k] for k, p in made.items() if p is None},
    )


def summarize(found: Collection, frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    models = frames["models"]
    counts = {
        f"{family}_models": int((models["family"] == family).sum())
        for family in sorted(set(models["family"]))
    }
    return {
        "evaluated_models": len(models),
        "not_evaluated_models": len(found.not_evaluated),
        "pareto_models": int(models["pareto"].sum()) if len(models) else 0,
        **counts,
    }


def _publish(staging: Path, run_dir: Path, latest: Path | None) -> None:
    """The finished files into the run directory, and a copy as the stable `latest` folder."""
    files = sorted(p for p in staging.iterdir() if p.is_file())
    if latest is not None:
        with atomic_dir(latest, overwrite=True) as tmp:
            for path in files:
                shutil.copy2(path, tmp / path.name)
    for path in files:
        os.replace(path, run_dir / path.name)


def judges_with_validation(evaluated: list[Any]) -> str:
    """Each judge's name with its validated figures on labelled real outputs (or that it has none)."""
    from mixmerge.evaluation.validation import validation_note

    found: dict[str, Any] = {}
    for m in evaluated:
        found.setdefault(m.judge_label, (m.results.get("judge") or {}).get("validation"))
    return ", ".join(validation_note(name, found[name]) for name in sorted(found))


def report(cfg: DictConfig) -> dict[str, Any]:
    """Build the report; returns its summary counts and where it was written."""
    options = check_config(cfg)
    found = collect(
        [str(d) for d in cfg.search_dirs],
        judge=None if cfg.select.judge is None else str(cfg.select.judge),
        base_model=None if cfg.select.base_model is None else str(cfg.select.base_model),
    )
    frames = build_frames(found.evaluated, options)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = Path(cfg.latest_dir) if cfg.latest_dir else None
    summary = summarize(found, frames)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=run_dir))
    try:
        figures, missing = write_report(cfg, found, frames, summary, options, staging)
        _publish(staging, run_dir, latest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    loggers = log_report(
        cfg,
        {k: frames[k] for k in CSV_FILES},
        {k: run_dir / p.name for k, p in figures.items()},
        summary,
    )
    print(
        f"Report of {summary['evaluated_models']} evaluated model(s); {len(missing)} item(s) missing (see report.md)"
    )
    print(
        f"Report written to {run_dir / REPORT_FILE}"
        + (f" and {latest / REPORT_FILE}" if latest else "")
    )
    if loggers:
        print(f"Tables and figures logged to {', '.join(loggers)}")
    return {
        **summary,
        "report": str(run_dir / REPORT_FILE),
        "latest": str(latest) if latest else None,
    }


def write_searches(
    cfg: DictConfig, found: Collection, options: Options, staging: Path
) -> tuple[list[str], list[str]]:
    """The searches' section (reporting/searches.py): its lines, and the files it wrote
    (search.csv, one figure per search) into `staging`."""
    found_searches = searches.sections(
        found.searches, found.evaluated, options.paired_samples, options.paired_seed
    )
    if not found_searches:
        return [], []
    files = ["search.csv"]
    searches.points_frame(found_searches).to_csv(staging / "search.csv", index=False)
    figures: dict[str, str] = {}
    if cfg.plots.enabled:
        for s in found_searches:
            name = (
                "search_"
                + "".join(c if c.isalnum() or c in "._-" else "_" for c in s.name)
                + ".png"
            )
            if searches.figure(s, staging / name, int(cfg.plots.dpi)) is not None:
                figures[s.name] = name
                files.append(name)
    return searches.markdown(found_searches, figures), files


def write_report(
    cfg: DictConfig,
    found: Collection,
    frames: dict[str, pd.DataFrame],
    summary: dict[str, Any],
    options: Options,
    staging: Path,
) -> tuple[dict[str, Path], list[Any]]:
    """The CSV tables, the figures, report.md and summary.json into `staging`; returns the
    figures and the missing items."""
    for key, name in CSV_FILES.items():
        frames[key].to_csv(staging / name, index=False)
    figures, skipped = (
        draw(frames, staging, cfg)
        if cfg.plots.enabled
        else ({}, {"figures": "plots.enabled=false"})
    )
    missing = missing_items(found, frames, skipped, options)
    searched, search_files = write_searches(cfg, found, options, staging)
    files = [
        REPORT_FILE, SUMMARY_FILE, *CSV_FILES.values(), *(p.name for p in figures.values()),
        *search_files,
    ]  # fmt: skip
    header = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "judges": judges_with_validation(found.evaluated) or "—",
        "decodings": "; ".join(sorted({m.decoding for m in found.evaluated})) or "—",
        "searched": ", ".join(f"`{p}`" for p in found.searched) or "—",
        "not_found": ", ".join(f"`{p}`" for p in found.missing_dirs),
        "files": " ".join(files),
    }
    text = markdown.render(
        frames,
        {k: p.name for k, p in figures.items()},
        missing,
        warnings(frames["models"]),
        options,
        header,
        searched,
    )
    (staging / REPORT_FILE).write_text(text, encoding="utf-8")
    write_json_atomic(
        staging / SUMMARY_FILE,
        {**summary, "created": header["created"], "missing": missing, "files": files},
    )
    return figures, missing
