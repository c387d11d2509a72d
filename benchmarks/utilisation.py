"""Utilisation: the training step's achieved FLOP/s against this machine's dense matmul FLOP/s.

The peak is measured in the same run (square matmuls in fp32 and bf16, best of REPS after a
warm-up). A training step's FLOPs are counted as 6 · N · T (N parameters, T tokens; forward 2NT
plus backward 4NT, attention's own FLOPs left out, which at 256 tokens are a few percent), once with
the non-padding tokens (useful work) and once with every token in the padded batch (what the
hardware computed).
"""

from __future__ import annotations

import time
from typing import Any

import torch

REPS = 5
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_flops(size: int, dtype: torch.dtype, reps: int = REPS) -> dict[str, float]:
    """FLOP/s of `size`×`size` matmuls: best and median of `reps` timed products."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    times = []
    for i in range(reps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first product is the warm-up
            times.append(time.perf_counter() - start)
    flops = 2 * size**3
    times.sort()
    return {
        "best_flops": flops / times[0],
        "median_flops": flops / times[len(times) // 2],
        "size": size,
        "device": device,
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: matmul_flops(spec["matmul_size"], dtype) for name, dtype in DTYPES.items()}


def precision_key(precision: str) -> str:
    """Which matmul peak a Lightning/TRL precision label is measured against."""
    return "bf16" if str(precision).startswith("bf16") else "fp32"


def achieved(sft: dict[str, Any], peaks: dict[str, Any]) -> dict[str, Any]:
    """Achieved FLOP/s of an SFT run (6 · params · tokens/s) and its fraction of the matmul peak."""
    key = precision_key(sft["precision"])
    peak = peaks[key]["best_flops"]
    useful = 6 * sft["params"] * sft["tokens_per_s"]
    hardware = 6 * sft["params"] * sft["padded_tokens_per_s"]
    return {
        "precision": key,
        "peak_flops": peak,
        "achieved_flops": useful,
        "fraction_of_peak": useful / peak,
        "achieved_flops_with_padding": hardware,
        "fraction_with_padding": hardware / peak,
    }
