"""The benchmark's sections: which processes each runs, with which shared settings."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.merge_runs import make_finetuned_copy, merged_run, mergekit_cli, mixmerge_cli
from benchmarks.options import WARMUP_STEPS, BenchOptions
from benchmarks.runner import run_child, run_process
from benchmarks.utilisation import achieved


@dataclass(frozen=True)
class Context:
    """What every section shares: options, scratch folder, the model and the synthetic data files."""

    opts: BenchOptions
    work: Path
    model_dir: Path
    model_cache_dir: Path
    sft_file: Path
    dpo_file: Path
    prompts: list[str]

    def spec(self, task: str, **extra: Any) -> dict[str, Any]:
        o = self.opts
        return {
            "task": task,
            "model_name": o.model,
            "model_dir": str(self.model_dir),
            "model_cache_dir": str(self.model_cache_dir),
            "batch_size": o.batch_size,
            "max_length": o.max_length,
            "steps": o.steps,
            "warmup": WARMUP_STEPS,
            "threads": o.threads,
            "seed": o.seed,
            "trl_precision": o.trl_precision,
            "trl_config": o.trl_config,
            **extra,
        }

    def child(self, name: str, task: str, **extra: Any) -> dict[str, Any]:
        """Run a child in its own scratch folder, removed afterwards (trained models are large)
        except for its spec, log and result."""
        folder = self.work / name
        result = run_child(name, self.spec(task, **extra), folder)
        for item in folder.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
        return result


def sft(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "mixmerge": ctx.child("sft-mixmerge", "sft.mixmerge", data_file=str(ctx.sft_file)),
        "trl": ctx.child("sft-trl", "sft.trl", data_file=str(ctx.sft_file)),
    }


def dpo(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    data = str(ctx.dpo_file)
    return {
        "mixmerge": ctx.child("dpo-mixmerge", "dpo.mixmerge", data_file=data),
        "trl": ctx.child("dpo-trl", "dpo.trl", data_file=data),
        "trl_precompute": ctx.child(
            "dpo-trl-precompute", "dpo.trl", data_file=data, precompute_ref_log_probs=True
        ),
    }


def merge(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    """For each method: `python -m mixmerge.merge`, then `mergekit-yaml` on the YAML it wrote."""
    models = ctx.work / "merge-models"
    general = make_finetuned_copy(ctx.model_dir, models / "general", seed=ctx.opts.seed + 1)
    safety = make_finetuned_copy(ctx.model_dir, models / "safety", seed=ctx.opts.seed + 2)
    out: dict[str, Any] = {}
    for method in ctx.opts.merge_methods:
        folder = ctx.work / f"merge-{method}"
        argv = mixmerge_cli(method, general, safety, folder / "mixmerge", ctx.opts.seed)
        ours = run_process(
            f"merge {method} (mixmerge)", argv, folder / "mixmerge.log", ctx.opts.threads
        )
        ours.update(merged_run(folder / "mixmerge", method), command=" ".join(argv[1:]))
        argv = mergekit_cli(ours["yaml"], folder / "mergekit-out", ours["options"], ctx.opts.seed)
        cli = run_process(
            f"merge {method} (mergekit-yaml)", argv, folder / "mergekit.log", ctx.opts.threads
        )
        out[method] = {"mixmerge": ours, "mergekit_cli": {**cli, "command": " ".join(argv)}}
        shutil.rmtree(folder / "mergekit-out", ignore_errors=True)
        shutil.rmtree(folder / "mixmerge" / "models", ignore_errors=True)
    shutil.rmtree(models, ignore_errors=True)
    return out


def generation(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    figures = ctx.child(
        "generation",
        "generation",
        prompts=ctx.prompts,
        max_new_tokens=ctx.opts.gen_new_tokens,
        dry_multiplier=ctx.opts.gen_dry,
    )
    return {k: figures[k] for k in ("fast", "generate", "identical")} | {
        "process": {k: figures[k] for k in ("process_wall_s", "peak_rss_mb")}
    }


def util(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    peaks = ctx.child("util", "util", matmul_size=ctx.opts.matmul_size)
    matmul = {k: peaks[k] for k in ("fp32", "bf16")}
    return {
        "matmul": matmul,
        **{fw: achieved(results["sft"][fw], matmul) for fw in ("mixmerge", "trl")},
    }


SECTION_RUNNERS: dict[str, Callable[[Context, dict[str, Any]], dict[str, Any]]] = {
    "sft": sft,
    "dpo": dpo,
    "merge": merge,
    "generation": generation,
    "util": util,
}
