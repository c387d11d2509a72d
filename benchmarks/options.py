"""Command-line options of `python -m benchmarks`, with the `--quick` preset."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from mixmerge.errors import MixmergeError

SECTIONS = ("sft", "dpo", "merge", "generation", "util")
MERGE_METHODS = ("linear", "slerp", "ties", "dare_ties", "task_arithmetic")
TRL_PRECISIONS = ("default", "fp32")
# default: TRL's defaults; recommended: what TRL's docs recommend where it applies on this machine
# (see benchmarks/trl_runs.py).
TRL_CONFIGS = ("default", "recommended")
# Where the generation section's prompts come from: the bundled eval prompts (what evaluation
# generates) or the synthetic training records' prompts (word salad from the general corpus).
GEN_PROMPT_SOURCES = ("eval", "synthetic")
WARMUP_STEPS = 1  # training steps run before the clock starts (allocations, lazy init, caches)


def available_cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


@dataclass(frozen=True)
class BenchOptions:
    """One benchmark run: the same model, data, batch, length, steps and threads for every framework."""

    model: str = "gemma3_270m"
    steps: int = 8  # timed training steps (after WARMUP_STEPS)
    batch_size: int = 4
    max_length: int = 256
    threads: int = 0  # 0: every core this process may run on
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    out: Path = Path("outputs/bench/results.json")
    dpo_pairs: int = 0  # 0: steps × batch_size (one epoch of `steps` steps)
    merge_methods: tuple[str, ...] = ("linear", "ties")
    gen_prompts: int = 64
    gen_new_tokens: int = 64
    matmul_size: int = 4096
    trl_precision: str = "default"
    trl_config: str = "default"
    gen_prompts_from: str = "eval"
    # The generation section's DRY penalty: the evaluation's default decoding (conf/evaluate.yaml,
    # generation.dry_multiplier); 0 = plain greedy, as the figures before 2026-12-02 were measured.
    gen_dry: float = 0.8
    seed: int = 42
    work_dir: Path | None = None
    keep_work: bool = False

    @property
    def pairs(self) -> int:
        return self.dpo_pairs or self.steps * self.batch_size


# What --quick changes (anything given explicitly on the command line still wins); its DPO epoch
# is one batch of pairs.
QUICK = {"steps": 2, "merge_methods": ("linear",), "gen_prompts": 32, "gen_new_tokens": 32}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark mixmerge against TRL (SFT, DPO) and the mergekit CLI (merging) on this machine.",
    )
    add = parser.add_argument
    add(
        "--model",
        help="a `model` config option: gemma3_270m (default), smollm2_135m, tiny_random, ...",
    )
    add(
        "--steps",
        type=int,
        help=f"timed training steps after {WARMUP_STEPS} warm-up step (default 8; quick 2)",
    )
    add(
        "--batch-size",
        type=int,
        help="training batch size: sequences (SFT) or pairs (DPO) (default 4)",
    )
    add("--max-length", type=int, help="maximum tokens per sequence (default 256)")
    add(
        "--threads", type=int, help="CPU threads for every framework (default: all available cores)"
    )
    add(
        "--sections",
        type=_csv,
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; util implies sft)",
    )
    add(
        "--quick",
        action="store_true",
        help="a short run (< 5 minutes on the default model on 2 cores)",
    )
    add("--out", type=Path, help="where the JSON results go (default outputs/bench/results.json)")
    add(
        "--dpo-pairs",
        type=int,
        help="preference pairs in the DPO epoch (default steps × batch size; quick: batch size)",
    )
    add(
        "--merge-methods",
        type=_csv,
        help="merge methods to time (default linear,ties; quick linear)",
    )
    add("--gen-prompts", type=int, help="prompts for the generation section (default 64; quick 32)")
    add("--gen-new-tokens", type=int, help="new tokens per prompt (default 64; quick 32)")
    add(
        "--matmul-size",
        type=int,
        help="side of the square matmuls that measure the peak (default 4096)",
    )
    add(
        "--trl-precision",
        choices=TRL_PRECISIONS,
        help="TRL's precision: default (its bf16=True; on a CPU-only machine with use_cpu=True) or fp32 (bf16=False)",
    )
    add(
        "--trl-config",
        choices=TRL_CONFIGS,
        help="TRL's trainer settings: default (its defaults) or recommended (its documented speed/memory settings that apply here: no gradient checkpointing for a model that fits; see benchmarks/trl_runs.py)",
    )
    add(
        "--gen-prompts-from",
        choices=GEN_PROMPT_SOURCES,
        help="generation prompts: eval (default: a seeded sample of the bundled eval prompts, red-team and general, six languages) or synthetic (the training records' prompts)",
    )
    add(
        "--gen-dry",
        type=float,
        help="the generation section's DRY multiplier (default 0.8, the evaluation's default decoding; 0 = plain greedy)",
    )
    add("--seed", type=int, help="seed of the synthetic data and of every framework (default 42)")
    add(
        "--work-dir",
        type=Path,
        help="scratch folder (default: a temporary folder, removed afterwards)",
    )
    add("--keep-work", action="store_true", help="keep the scratch folder (logs, models, configs)")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> BenchOptions:
    """Parse and check the command line; bad values raise MixmergeError naming the option."""
    args = vars(build_parser().parse_args(argv))
    given = {f.name: args[f.name] for f in fields(BenchOptions) if args.get(f.name) is not None}
    given.pop("keep_work", None)
    opts = BenchOptions(quick=bool(args["quick"]), keep_work=bool(args["keep_work"]))
    if opts.quick:
        opts = replace(opts, **QUICK)
    opts = replace(opts, **given)
    if opts.quick and "dpo_pairs" not in given:
        opts = replace(opts, dpo_pairs=opts.batch_size)
    if not opts.threads:
        opts = replace(opts, threads=available_cores())
    check_options(opts)
    # Utilisation is the SFT step's FLOP/s over the matmul peak, so it needs the SFT figures.
    wanted = set(opts.sections) | ({"sft"} if "util" in opts.sections else set())
    return replace(opts, sections=tuple(s for s in SECTIONS if s in wanted))


def check_options(opts: BenchOptions) -> None:
    for name in ("steps", "batch_size", "threads", "gen_prompts", "gen_new_tokens", "matmul_size"):
        value = getattr(opts, name)
        if not isinstance(value, int) or value < 1:
            raise MixmergeError(f"--{name.replace('_', '-')}={value}: expected a positive integer")
    if opts.max_length < 64:
        raise MixmergeError(
            f"--max-length={opts.max_length}: expected an integer >= 64 (records are 60-250 tokens)"
        )
    if opts.dpo_pairs < 0:
        raise MixmergeError(f"--dpo-pairs={opts.dpo_pairs}: expected a positive integer")
    for section in opts.sections:
        if section not in SECTIONS:
            raise MixmergeError(
                f"--sections: unknown section '{section}' (expected a subset of {','.join(SECTIONS)})"
            )
    if not opts.sections:
        raise MixmergeError(f"--sections: empty (expected a subset of {','.join(SECTIONS)})")
    for method in opts.merge_methods:
        if method not in MERGE_METHODS:
            raise MixmergeError(
                f"--merge-methods: unknown method '{method}' (expected any of {','.join(MERGE_METHODS)})"
            )
