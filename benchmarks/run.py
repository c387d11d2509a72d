"""The benchmark run, top to bottom: model → synthetic records → sections → table + JSON."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.options import WARMUP_STEPS, BenchOptions
from benchmarks.report import build_rows, busy_note, format_table, rows_as_dicts
from benchmarks.sections import SECTION_RUNNERS, Context
from benchmarks.synthetic import synthetic_records, write_jsonl
from mixmerge.config import auto_precision, compose_config, cpu_has_bf16
from mixmerge.data.formatting import encode_example
from mixmerge.errors import MixmergeError
from mixmerge.io import write_json_atomic
from mixmerge.modeling import load_tokenizer, resolve_model

PACKAGES = ("torch", "transformers", "lightning", "trl", "mergekit", "mixmerge")


def resolve_bench_model(opts: BenchOptions, work: Path) -> tuple[Path, Path]:
    """The model folder `--model` selects (converted or built once in the model cache) and that cache."""
    try:
        cfg = compose_config("train", [f"model={opts.model}"], work)
    except Exception as err:  # Hydra's MissingConfigException and friends
        raise MixmergeError(
            f"--model={opts.model}: not a `model` config option ({str(err).splitlines()[0]})"
        ) from err
    return Path(resolve_model(cfg.model, work / "models")), Path(cfg.model.cache_dir).expanduser()


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_trl(opts: BenchOptions) -> None:
    if {"sft", "dpo"} & set(opts.sections) and importlib.util.find_spec("trl") is None:
        raise MixmergeError(
            "--sections: sft and dpo compare against TRL, which is not installed "
            "(pip install 'mixmerge[bench]', or leave them out with --sections merge,generation)"
        )


def data_stats(tokenizer: Any, records: list[dict[str, Any]], max_length: int) -> dict[str, float]:
    sft = [len(encode_example(tokenizer, r, "sft", max_length)["input_ids"]) for r in records]
    return {
        "records": len(records),
        "min_tokens": min(sft),
        "mean_tokens": sum(sft) / len(sft),
        "max_tokens": max(sft),
    }


def machine(load_at_start: Any) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_bf16": cpu_has_bf16(),
        "mixmerge_precision_default": auto_precision(),
        # Other work on the machine slows every framework; these say how busy it was.
        "load_average_start": load_at_start,
        "load_average_end": _load(),
    }


@contextlib.contextmanager
def _scratch(work: Path, remove: bool) -> Iterator[Path]:
    yield work
    if remove:
        shutil.rmtree(work, ignore_errors=True)


def _load() -> Any:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def eval_prompts(n: int, seed: int) -> list[str]:
    """A seeded sample of `n` bundled eval prompts (red-team and general, every language): what
    evaluation generates, refusals that end early and long contexts included."""
    import random

    from omegaconf import OmegaConf

    from mixmerge import LANGUAGES
    from mixmerge.evaluation.evalsets import load_eval_set

    bundled = OmegaConf.create({"source": "bundled"})
    items = [
        item["prompt"]
        for kind in ("redteam", "general")
        for item in load_eval_set(kind, bundled, LANGUAGES)
    ]
    return random.Random(seed).sample(items, min(n, len(items)))


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the selected sections; print the table; write and return the JSON report."""
    check_trl(opts)
    start, load_at_start = time.perf_counter(), _load()
    work = Path(opts.work_dir or tempfile.mkdtemp(prefix="mixmerge-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # On failure the scratch folder stays, so the log an error message names can be read.
    with _scratch(work, remove=not opts.keep_work and opts.work_dir is None):
        model_dir, model_cache = resolve_bench_model(opts, work)
        tokenizer = load_tokenizer(str(model_dir))
        n_sft = (
            WARMUP_STEPS + opts.steps
        ) * opts.batch_size  # one epoch: every record is trained on once
        records = synthetic_records(
            tokenizer, max(n_sft, opts.pairs, opts.gen_prompts), opts.seed, opts.max_length
        )
        ctx = Context(
            opts=opts,
            work=work,
            model_dir=model_dir,
            model_cache_dir=model_cache,
            sft_file=write_jsonl(work / "data" / "sft.jsonl", records[:n_sft]),
            dpo_file=write_jsonl(work / "data" / "dpo.jsonl", records[: opts.pairs]),
            prompts=(
                eval_prompts(opts.gen_prompts, opts.seed)
                if opts.gen_prompts_from == "eval"
                else [r["prompt"] for r in records[: opts.gen_prompts]]
            ),
        )
        results: dict[str, Any] = {}
        for section in opts.sections:
            print(f"[bench] {section} ...", flush=True)
            results[section] = SECTION_RUNNERS[section](ctx, results)
        rows = build_rows(results)
        report = {
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "options": {**asdict(opts), "warmup_steps": WARMUP_STEPS, "dpo_pairs": opts.pairs},
            "model": {"name": opts.model, "path": str(model_dir)},
            "data": data_stats(tokenizer, records[:n_sft], opts.max_length),
            "machine": machine(load_at_start),
            "versions": versions(),
            "sections": results,
            "table": rows_as_dicts(rows),
            "bench_wall_s": time.perf_counter() - start,
        }
    print(format_table(rows))
    note = busy_note(results, report["machine"]["cores_available"])
    if note:
        report["note"] = note
        print(f"[bench] {note}")
    out = write_json_atomic(opts.out, report)
    print(f"[bench] {len(rows)} figures in {report['bench_wall_s']:.0f} s; written to {out}")
    return report
