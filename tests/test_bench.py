"""`python -m benchmarks --quick` on the tiny model: every section runs (TRL, mergekit CLI and
all) and the table and JSON are well formed. No timing assertions: figures only have to exist.
The benchmark lives beside the package, not in it: a user installs mixmerge, not its harness."""

from __future__ import annotations

import json
import math
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch

from benchmarks.options import SECTIONS, parse_options
from benchmarks.timing import throughput
from mixmerge.errors import MixmergeError
from tests.helpers import ROOT, run_cli


def numbers(node: object) -> list[float]:
    """Every number in a JSON tree (booleans are not figures)."""
    if isinstance(node, dict):
        return [x for value in node.values() for x in numbers(value)]
    if isinstance(node, list):
        return [x for value in node for x in numbers(value)]
    return [float(node)] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


# The whole benchmark end to end (TRL, mergekit CLI, generation, matmul peak) is the suite's
# slowest test (~1.5-3 min): it runs in `make test-full`, its parts' options and report in the fast suite.
@pytest.mark.slow
def test_quick_bench_on_the_tiny_model(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "results.json"
    # One thread: the tiny model's ops are too small to share, and on a busy machine two OpenMP
    # threads wait on each other at every op (seconds per tiny step instead of tens of milliseconds).
    args = [
        "--quick",
        "--model",
        "tiny_random",
        "--threads",
        "1",
        "--matmul-size",
        "256",
        "--out",
        str(out),
    ]
    # `benchmarks` is not installed: run_cli puts the checkout on the path, as `make bench` runs in it.
    result = run_cli("benchmarks", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    report = json.loads(out.read_text())
    assert list(report["sections"]) == list(SECTIONS)
    assert report["options"]["quick"] is True and report["model"]["name"] == "tiny_random"
    assert report["versions"]["trl"] and report["versions"]["mergekit"]
    for name, section in report["sections"].items():
        figures = numbers(section)
        assert figures, name
        assert all(math.isfinite(x) for x in figures), name

    sft = report["sections"]["sft"]
    for framework in ("mixmerge", "trl"):
        for key in ("tokens_per_s", "seconds_per_step", "peak_rss_mb", "process_wall_s", "params"):
            assert sft[framework][key] > 0, (framework, key)
        assert sft[framework]["timed_steps"] == 2
    assert sft["mixmerge"]["params"] == sft["trl"]["params"]  # the same model on both sides

    dpo = report["sections"]["dpo"]
    pairs = report["options"]["dpo_pairs"]
    for framework in ("mixmerge", "trl", "trl_precompute"):
        assert dpo[framework]["pairs"] == pairs  # one epoch over the same pairs
        for key in ("wall_s", "pairs_per_s", "tokens_per_s", "peak_rss_mb"):
            assert dpo[framework][key] > 0, (framework, key)
        assert dpo[framework]["setup_s"] < dpo[framework]["wall_s"]

    merge = report["sections"]["merge"]["linear"]
    assert Path(merge["mixmerge"]["yaml"]).name == "mergekit_config.yml"
    assert merge["mergekit_cli"]["command"].split()[1] == merge["mixmerge"]["yaml"]  # the same YAML
    for side in ("mixmerge", "mergekit_cli"):
        assert merge[side]["process_wall_s"] > 0 and merge[side]["peak_rss_mb"] > 0

    generation = report["sections"]["generation"]
    for path in ("fast", "generate"):
        assert generation[path]["prompts"] == 32 and generation[path]["tokens_per_s"] > 0
        assert generation[path]["dry_multiplier"] == 0.8  # the evaluation's decoding
    # The tiny model in float32 (one thread): the fast decoder's outputs are generate's (with DRY).
    assert generation["identical"] == 32
    util = report["sections"]["util"]
    for framework in ("mixmerge", "trl"):
        assert 0 < util[framework]["fraction_of_peak"] <= util[framework]["fraction_with_padding"]

    # The table: one row per figure, printed and in the JSON, each with a value and a ratio.
    rows = report["table"]
    assert {row["section"] for row in rows} == set(SECTIONS)
    for row in rows:
        assert math.isfinite(row["mixmerge"]) and row["mixmerge"] > 0, row
        if row["peer_value"] is not None:
            assert row["peer_value"] > 0 and row["ratio"] == pytest.approx(
                row["mixmerge"] / row["peer_value"]
            )
        if row["target"]:
            assert isinstance(row["target_met"], bool)
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("section"))
    assert [line.split("|")[1].strip() for line in lines[header + 2 : header + 2 + len(rows)]] == [
        r["metric"] for r in rows
    ]


def test_throughput_starts_the_clock_after_the_warm_up_step() -> None:
    log = {
        "step_ends": [10.0, 12.0, 16.0],
        "cpu_ends": [5.0, 9.0, 17.0],
        "tokens": [300, 100, 200],
        "padded_tokens": [400, 100, 300],
    }
    figures = throughput(log, warmup=1, threads=2)
    assert figures["timed_steps"] == 2 and figures["seconds"] == 6.0
    assert figures["tokens_per_s"] == pytest.approx(300 / 6)
    assert figures["padding_fraction"] == pytest.approx(1 - 300 / 400)
    assert figures["cpu_busy"] == pytest.approx(12 / (6 * 2))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sections", "sft,nope"], "--sections: unknown section 'nope'"),
        (["--merge-methods", "average"], "--merge-methods: unknown method 'average'"),
        (["--steps", "0"], "--steps=0: expected a positive integer"),
    ],
)
def test_bad_options_name_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(MixmergeError, match=message):
        parse_options(argv)


def test_quick_preset_and_util_needs_sft() -> None:
    opts = parse_options(["--quick", "--steps", "5", "--sections", "util"])
    assert opts.steps == 5  # an explicit option beats the preset
    assert opts.merge_methods == ("linear",) and opts.gen_prompts == 32
    assert opts.sections == ("sft", "util")
    assert opts.pairs == opts.batch_size  # the quick DPO epoch is one batch of pairs
    assert parse_options(["--steps", "3"]).pairs == 3 * 4


def test_the_benchmark_is_not_installed_with_mixmerge() -> None:
    # setuptools' package discovery keeps the dotted names that match an `include` pattern.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = lambda name: any(fnmatch(name, pattern) for pattern in include)  # noqa: E731
    assert installed("mixmerge") and installed("mixmerge.training")
    assert (ROOT / "benchmarks" / "__main__.py").is_file()
    assert not installed("benchmarks") and not installed("benchmarks.child")


def test_trl_recommended_config_and_eval_prompts() -> None:
    from benchmarks.options import parse_options
    from benchmarks.run import eval_prompts
    from benchmarks.trl_runs import config_args

    opts = parse_options(["--trl-config", "recommended"])
    assert opts.trl_config == "recommended" and opts.gen_prompts_from == "eval"
    assert config_args(opts.trl_config) == {"gradient_checkpointing": False}
    assert config_args("default") == {}  # TRL's own defaults (gradient checkpointing on)
    prompts = eval_prompts(64, 42)
    assert prompts == eval_prompts(64, 42) and len(set(prompts)) == 64
    scripts = {"\u0900" <= ch <= "\u097f" for p in prompts for ch in p}  # some Hindi among them
    assert True in scripts
    assert len(eval_prompts(10_000, 0)) == 642  # every bundled eval prompt, no more


def test_generation_is_benchmarked_with_the_evaluations_decoding_unless_told() -> None:
    from omegaconf import OmegaConf

    from benchmarks.options import parse_options

    evaluate = OmegaConf.load(ROOT / "conf" / "evaluate.yaml")
    assert parse_options([]).gen_dry == evaluate.generation.dry_multiplier
    assert parse_options(["--gen-dry", "0"]).gen_dry == 0


def test_head_pruning_bound_holds_and_is_exact_at_full_rank() -> None:
    from benchmarks.head_pruning import candidate_shares

    gen = torch.Generator().manual_seed(0)
    embedding = torch.randn(500, 16, generator=gen)
    hidden = torch.randn(8, 16, generator=gen) * 5
    shares = candidate_shares(hidden, embedding, [4, 16])["ranks"]
    # At full rank the residual is zero, the bound is the logit itself: only the argmax remains.
    assert shares[16]["max_share"] == round(1 / 500, 4)
    # Below it the bound still keeps the argmax (asserted inside) and keeps more candidates.
    assert shares[4]["mean_share"] > shares[16]["mean_share"]
