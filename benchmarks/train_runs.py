"""mixmerge's side of the training sections: `mixmerge.training.pipeline.train` itself, on the
composed `train` config, with a step timer added as a callback.

Everything a user's run does happens here (mixture, tokenisation, reference log-probs into a cold
cache, the Lightning Trainer as configured, export); only the logger is off, as TRL's is (`report_to="none"`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.timing import throughput
from mixmerge.config import compose_config


def train_overrides(spec: dict[str, Any], objective: str, timer_file: Path) -> list[str]:
    """The `train` config for the benchmark's records: general data only, from the synthetic file."""
    return [
        f"model={spec['model_name']}",
        f"model.cache_dir={spec['model_cache_dir']}",
        f"objective={objective}",
        "data=mix_0pct_safety",
        "languages=en",
        "data.general.source=path",
        f"data.general.path={spec['data_file']}",
        "data.max_examples_per_language=null",
        f"data.batch_size={spec['batch_size']}",
        f"data.max_length={spec['max_length']}",
        f"seed={spec['seed']}",
        "logger=none",
        "+callbacks.bench_timer._target_=benchmarks.lightning_timer.StepTimer",
        f"+callbacks.bench_timer.out={timer_file}",
    ]


def _train(
    spec: dict[str, Any], objective: str, extra: list[str]
) -> tuple[dict[str, Any], tuple[float, float], Any]:
    from mixmerge.training.pipeline import train

    work = Path(spec["work_dir"])
    timer_file = work / "timer.json"
    cfg = compose_config("train", [*train_overrides(spec, objective, timer_file), *extra], work)
    start = (time.perf_counter(), time.process_time())
    train(cfg)
    return json.loads(timer_file.read_text(encoding="utf-8")), start, cfg


def run_sft(spec: dict[str, Any]) -> dict[str, Any]:
    """SFT for warm-up + `steps` steps; tokens/s over the timed steps."""
    log, _, cfg = _train(spec, "sft", [f"trainer.max_steps={spec['warmup'] + spec['steps']}"])
    return {
        **throughput(log, spec["warmup"], spec["threads"]),
        "params": log["params"],
        "precision": log["precision"],
        "gradient_checkpointing": bool(cfg.model.gradient_checkpointing),
        "packing": bool(cfg.data.packing),
    }


def run_dpo(spec: dict[str, Any]) -> dict[str, Any]:
    """One DPO epoch over the pairs; the clock runs from `train()`'s start (data, reference
    log-probs into an empty cache, model loading) to the end of the last training step."""
    extra = [
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
        f"paths.cache_dir={Path(spec['work_dir']) / 'cache'}",
    ]
    log, start, cfg = _train(spec, "dpo", extra)
    return {
        **epoch_figures(log, start, spec["threads"]),
        "precision": log["precision"],
        "reference": "precomputed before training (mixmerge.training.reference), cache cold",
    }


def epoch_figures(
    log: dict[str, Any], start: tuple[float, float], threads: int
) -> dict[str, float]:
    """Wall time of a whole epoch from `start` (wall clock, process CPU time), split into setup
    (before the first step) and training, and how busy the process kept its threads."""
    wall = log["train_end"] - start[0]
    pairs = sum(log["rows"]) // 2  # chosen and rejected rows of every pair
    tokens = sum(log["tokens"])
    return {
        "wall_s": wall,
        "setup_s": log["train_start"] - start[0],
        "train_s": log["train_end"] - log["train_start"],
        "steps": len(log["step_ends"]),
        "pairs": pairs,
        "pairs_per_s": pairs / wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "padding_fraction": 1 - tokens / sum(log["padded_tokens"]),
        "cpu_busy": (log["train_end_cpu"] - start[1]) / (wall * threads),
    }
