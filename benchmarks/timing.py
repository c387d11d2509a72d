"""Throughput from per-step records, shared by the Lightning and the Hugging Face Trainer timers.

A timer records, for every optimizer step, the wall clock and the process CPU time at the end of
the step and the batch's non-padding and padded token counts. Throughput is measured from the end
of the warm-up steps to the end of the last step, so data loading, the framework's loop and its
callbacks count, as they do for a user.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mixmerge.training.logprobs import sequence_count


class StepLog:
    """What a timer records; `save` writes it as JSON for the parent process."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {
            "step_ends": [],
            "cpu_ends": [],
            "tokens": [],
            "padded_tokens": [],
            "rows": [],
        }

    def batch(self, batch: dict[str, Any]) -> None:
        """Count a batch's tokens (attention-mask ones are real tokens, the mask's size the padded
        ones) and its sequences (rows, or the sequences packed into them)."""
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.data["tokens"].append(int(mask.sum()) if mask is not None else int(ids.numel()))
        self.data["padded_tokens"].append(int(ids.numel()))
        self.data["rows"].append(sequence_count(batch))

    def step_end(self) -> None:
        self.data["step_ends"].append(time.perf_counter())
        self.data["cpu_ends"].append(time.process_time())

    def mark(self, name: str, value: Any = None) -> None:
        """Record `value`, or the wall clock (and, as `<name>_cpu`, the process CPU time) now."""
        if value is None:
            self.data[name], self.data[f"{name}_cpu"] = time.perf_counter(), time.process_time()
        else:
            self.data[name] = value

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.data), encoding="utf-8")


def throughput(log: dict[str, Any], warmup: int, threads: int) -> dict[str, float]:
    """Tokens/s over the steps after `warmup` (non-padding and padded), seconds per step, padding share,
    and how busy this process kept its threads (below ~0.9 the machine was shared or the loop stalled)."""
    ends, cpu = log["step_ends"], log["cpu_ends"]
    steps = len(ends)
    if steps <= warmup:
        raise RuntimeError(
            f"only {steps} training steps ran; the benchmark needs more than {warmup} (warm-up)"
        )
    seconds = ends[-1] - ends[warmup - 1]
    tokens = sum(log["tokens"][warmup:steps])
    padded = sum(log["padded_tokens"][warmup:steps])
    return {
        "timed_steps": steps - warmup,
        "seconds": seconds,
        "seconds_per_step": seconds / (steps - warmup),
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "padded_tokens_per_s": padded / seconds,
        "padding_fraction": 1 - tokens / padded,
        "cpu_busy": (cpu[-1] - cpu[warmup - 1]) / (seconds * threads),
    }
