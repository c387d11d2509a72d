"""The train command as a user runs it: a subprocess with overrides, and its errors."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli

TINY = [
    "model=tiny_random",
    "logger=csv",
    "trainer.precision=32-true",
    "trainer.max_steps=2",
    "data.max_length=256",
    "languages=en",
    "data.max_examples_per_language=8",
]


def test_train_cli_runs_with_overrides(tmp_path, cache_dir):
    result = run_cli(
        "mixmerge.train", *TINY, "data=mix_100pct_safety", "hydra.run.dir=run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = tmp_path / "outputs/models/tiny-random-sft-mix100-en"
    assert (model / "model.safetensors").is_file() and (model / "mixmerge.json").is_file()
    manifest = json.loads((tmp_path / "run/mixture.json").read_text())
    assert manifest["counts"]["en"] == {"general": 0, "safety": 8}
    assert f"Model written to {model}" in result.stdout
    assert list((tmp_path / "run/csv").rglob("metrics.csv"))
    # One line per log message (Lightning's own console handler, not Hydra's console as well), and
    # the known third-party noise filtered; the job's log file keeps every message.
    output = result.stdout + result.stderr
    for message in ("Seed set to 42", "GPU available:", "`Trainer.fit` stopped"):
        assert output.count(message) == 1, (message, output[-3000:])
        assert message in (tmp_path / "run/train.log").read_text()
    for noise in ("💡 Tip", "litlogger", "LeafSpec", "Setting accelerator to CPU"):
        assert noise not in output, noise
    assert "Epoch 0: 100%" in result.stdout  # the progress bar stays


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["languages.codes=[en,xx]"], "languages.codes: unknown language 'xx'"),
        (["data.safety_ratio=1.5"], "data.safety_ratio=1.5: expected a number in [0, 1]"),
        (["model.init_from=/no/such/model"], "model.init_from=/no/such/model: no such model"),
        (
            ["data.general.source=path", "data.general.path=bad.jsonl"],
            "bad.jsonl:1: field 'chosen' is missing",
        ),
    ],
)
def test_bad_input_one_line_nonzero_nothing_written(tmp_path, cache_dir, args, message):
    (tmp_path / "bad.jsonl").write_text('{"language": "en", "prompt": "hi"}\n')
    result = run_cli("mixmerge.train", *TINY, *args, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("mixmerge: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "outputs/models").exists() or not any(
        (tmp_path / "outputs/models").iterdir()
    )


def test_unknown_group_option_is_rejected_by_hydra(tmp_path, cache_dir):
    result = run_cli("mixmerge.train", "data=mix_42pct_safety", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'data/mix_42pct_safety'" in result.stderr
    assert not (tmp_path / "outputs/models").exists()


def test_help_and_cfg_job(tmp_path):
    result = run_cli("mixmerge.train", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "mix_15pct_safety" in result.stdout
    result = run_cli("mixmerge.train", "--cfg", "job", "data=mix_0pct_safety", cwd=tmp_path)
    assert result.returncode == 0 and "safety_ratio: 0.0" in result.stdout
