"""The evaluate command as a user runs it: a subprocess with overrides, W&B offline, and its errors."""

from __future__ import annotations

import json
import socket

import pytest

from tests.helpers import run_cli

TINY = [
    "model=tiny_random",
    "max_prompts_per_language=2",
    "generation.max_new_tokens=8",
    "bootstrap.samples=20",
    "hydra.run.dir=run",
]


def test_evaluate_cli_logs_a_language_table_to_wandb(tmp_path, cache_dir):
    result = run_cli(
        "mixmerge.evaluate",
        *TINY,
        "model_ref=base",
        "languages=en_fr_es",
        "logger=wandb",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run/eval_results.json").read_text())
    assert (
        results["average"]["win_rate_pct"] == 50.0 and results["average"]["harm_change_pct"] == 0.0
    )
    assert "Results written to" in result.stdout and "avg" in result.stdout
    runs = list((tmp_path / "run/wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    table = list(runs[0].rglob("eval/languages_*.table.json"))
    assert table and json.loads(table[0].read_text())["columns"][0] == "language"
    assert len(json.loads(table[0].read_text())["data"]) == 3
    # The per-item judgements as a table, one row per item (2 red-team + 2 general × 3 languages).
    items = json.loads(next(runs[0].rglob("eval/judgements_*.table.json")).read_text())
    assert items["columns"][:5] == ["id", "language", "set", "task", "prompt"]
    assert len(items["data"]) == 12 and {r[2] for r in items["data"]} == {"redteam", "general"}
    # Per-language rates are logged as metrics (offline, the run log is W&B's binary record).
    log = next(runs[0].glob("*.wandb")).read_bytes()
    for key in (b"eval/fr/win_rate_pct", b"eval/en/harm_change_pct", b"eval/average/harm_rate"):
        assert key in log, key


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "model_ref: required"),
        (["model_ref=/no/such/model"], "model_ref=/no/such/model: no such model"),
        (
            [
                "model_ref=base",
                "judge=openai_compatible",
                "judge.api_key_env=null",
                "judge.base_url=http://127.0.0.1:{port}/v1",
            ],
            "judge.base_url=http://127.0.0.1:{port}/v1: endpoint unreachable",
        ),
        (
            ["model_ref=base", "judge=openai_compatible", "judge.api_key_env=MIXMERGE_UNSET_KEY"],
            "judge.api_key_env=MIXMERGE_UNSET_KEY: environment variable not set",
        ),
    ],
)
def test_bad_input_one_line_nonzero_nothing_written(tmp_path, cache_dir, args, message):
    port = closed_port()
    args = [a.format(port=port) for a in args]
    result = run_cli("mixmerge.evaluate", *TINY, *args, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("mixmerge: error:")]
    assert len(errors) == 1 and message.format(port=port) in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "run/eval_results.json").exists()
    assert not (tmp_path / "run/generations_model.jsonl").exists()  # stopped before generating


def test_help_lists_the_groups(tmp_path):
    result = run_cli("mixmerge.evaluate", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("openai_compatible", "hf_local", "offline", "bundled", "hub"):
        assert option in result.stdout
