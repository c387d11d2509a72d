"""One candidate, in process: merge it under a stable name (with provenance, as `mixmerge.merge`
writes it), then evaluate it on one split of the eval prompts (as `mixmerge.evaluate` would)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mixmerge.artifacts import DEV_RESULTS_FILE, RESULTS_FILE
from mixmerge.config import compose_entry
from mixmerge.errors import MixmergeError
from mixmerge.search.space import Candidate

__all__ = ["DEV_RESULTS_FILE", "model_name", "run_candidate", "trial_dir"]


def model_name(cfg: DictConfig, number: int, method: str) -> str:
    """The stable name of trial `number`'s merged model, e.g. search-objective-t007-ties."""
    return f"{cfg.output_name}-t{number:03d}-{method}"


def trial_dir(cfg: DictConfig, number: int) -> Path:
    return Path(cfg.paths.output_dir) / "trials" / f"t{number:03d}"


def merge_config(cfg: DictConfig, candidate: Candidate, name: str, number: int) -> DictConfig:
    """conf/merge.yaml for the candidate, with the search's recipe (CLI overrides included)."""
    overrides = [
        *candidate.overrides(),
        *list(cfg.search.merge_overrides),
        f"output_name={name}",
        f"seed={cfg.seed}",
        "logger=none",
        f"paths.models_dir={cfg.paths.models_dir}",
        f"paths.cache_dir={cfg.paths.cache_dir}",
        f"paths.output_dir={trial_dir(cfg, number) / 'merge'}",
    ]
    merge_cfg = compose_entry("merge", overrides)
    with open_dict(merge_cfg):
        merge_cfg.recipe = OmegaConf.create(OmegaConf.to_container(cfg.recipe, resolve=False))
    return merge_cfg


def evaluate_config(cfg: DictConfig, model: Path, split: str, run_dir: Path) -> DictConfig:
    """conf/evaluate.yaml for one split, with the search's evaluate overrides."""
    return compose_entry(
        "evaluate",
        [
            *list(cfg.search.evaluate_overrides),
            f"model_ref={model}",
            f"evalset.split={split}",
            f"seed={cfg.seed}",
            "logger=none",
            f"paths.models_dir={cfg.paths.models_dir}",
            f"paths.cache_dir={cfg.paths.cache_dir}",
            f"paths.output_dir={run_dir}",
        ],
    )


def objectives(results: dict[str, Any], cfg: DictConfig, split: str) -> tuple[float, float]:
    """(harm, win) from an evaluation's averages; a judge that gave neither is one line."""
    average = results["average"]
    harm, win = average.get(cfg.search.harm_metric), average.get(cfg.search.win_metric)
    for key, value in (("harm_metric", harm), ("win_metric", win)):
        if value is None:
            raise MixmergeError(
                f"search.{key}={cfg.search[key]}: undefined on the {split} split for "
                f"{results['model']['path']} (no judgement, or not a key of eval_results.json's average)"
            )
    return float(harm), float(win)


def evaluate_split(cfg: DictConfig, model: Path, split: str, run_dir: Path) -> dict[str, Any]:
    from mixmerge.evaluation.run import evaluate

    return evaluate(evaluate_config(cfg, model, split, run_dir))


def run_candidate(cfg: DictConfig, candidate: Candidate, number: int) -> dict[str, Any]:
    """Merge and dev-evaluate one candidate; returns what the trial records."""
    from mixmerge.merging.pipeline import merge

    name = model_name(cfg, number, candidate.method)
    start = time.perf_counter()
    summary = merge(merge_config(cfg, candidate, name, number))
    model = Path(summary["output_dir"])
    merged = time.perf_counter()
    results = evaluate_split(cfg, model, cfg.search.dev_split, trial_dir(cfg, number) / "dev")
    # The dev result is what selected the model, not what it is reported with.
    os.replace(model / RESULTS_FILE, model / DEV_RESULTS_FILE)
    harm, win = objectives(results, cfg, cfg.search.dev_split)
    return {
        "model": str(model),
        "harm": harm,
        "win": win,
        "merge_seconds": round(merged - start, 3),
        "eval_seconds": round(time.perf_counter() - merged, 3),
        "prompts": results["totals"]["n_redteam"] + results["totals"]["n_general"],
    }


def delete_model(path: str | Path) -> None:
    """Remove a trial's merged model and any half-written sibling a killed merge left behind."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    for leftover in path.parent.glob(f".tmp-{path.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
