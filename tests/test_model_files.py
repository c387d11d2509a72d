"""Unreadable weights, configs, tokenizers and checkpoints: one line naming the file, exit 2, for
every place a model is read (issue 17, item 2)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mixmerge.config import compose_config
from mixmerge.errors import EXIT_CODE, MixmergeError, report_errors
from mixmerge.model_files import check_model_folder
from tests.merge_helpers import make_base, make_finetuned


def truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


# name -> (file it breaks, how, what the one line must say)
CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "truncated weights": ("model.safetensors", truncate, "not a readable safetensors file"),
    "empty weights": ("model.safetensors", lambda f: f.write_bytes(b""), "not a readable safetensors"),
    "random weights": ("model.safetensors", lambda f: f.write_bytes(bytes(range(256)) * 4), "safetensors"),
    "empty config": ("config.json", lambda f: f.write_text(""), "empty file (expected JSON)"),
    "truncated config": ("config.json", truncate, "not valid JSON"),
    "latin-1 config": ("config.json", lambda f: f.write_bytes('{"model_type": "llamé"}'.encode("latin-1")), "not UTF-8"),
    "list config": ("config.json", lambda f: f.write_text("[1, 2]"), "expected a JSON object"),
    "truncated tokenizer": ("tokenizer.json", truncate, "not a valid tokenizer (EOF while parsing"),
    "wrong tokenizer": ("tokenizer.json", lambda f: f.write_text('{"model": 3}'), "not a valid tokenizer"),
    "empty tokenizer config": ("tokenizer_config.json", lambda f: f.write_text(" "), "empty file"),
}  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model-files")
    return make_base(root / "base")


def broken(base: Path, dest: Path, case: str) -> tuple[Path, Path]:
    """A copy of `base` with one file broken as `case` says; returns (folder, broken file)."""
    shutil.copytree(base, dest)
    name, how, _ = CORRUPTIONS[case]
    how(dest / name)
    return dest, dest / name


def one_error(fn: Callable[..., Any], cfg: Any, capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        report_errors(fn)(cfg)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mixmerge: error:")]  # noqa: E741
    assert exc.value.code == EXIT_CODE and len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_check_model_folder_names_the_file(base, tmp_path, case):
    folder, file = broken(base, tmp_path / "m", case)
    with pytest.raises(MixmergeError) as err:
        check_model_folder(folder, key="model_ref")
    message = str(err.value)
    assert message.startswith(f"model_ref: {file}: ") and CORRUPTIONS[case][2] in message
    assert "\n" not in message


def test_a_sound_folder_and_a_missing_shard(base, tmp_path):
    check_model_folder(base, key="x")  # the tiny model itself passes
    folder = shutil.copytree(base, tmp_path / "sharded")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(
        MixmergeError, match="names model-00002-of-00002.safetensors, which is missing"
    ):
        check_model_folder(folder, key="x")


@pytest.mark.parametrize("case", ["truncated weights", "empty config", "truncated tokenizer"])
def test_train_init_from(base, tmp_path, cache_dir, capsys, case):
    from mixmerge.training.pipeline import train

    folder, file = broken(base, tmp_path / "models" / "start", case)
    cfg = compose_config(
        "train", ["model=tiny_random", "logger=none", "model.init_from=start"], tmp_path
    )
    line = one_error(train, cfg, capsys)
    assert line.startswith(f"mixmerge: error: model.init_from: {file}: ")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["start"]


@pytest.mark.parametrize("case", ["truncated weights", "latin-1 config", "wrong tokenizer"])
def test_merge_parent(base, tmp_path, capsys, case):
    from mixmerge.merging.pipeline import merge

    models = tmp_path / "models"
    make_finetuned(base, models / "general", seed=1)
    safety = make_finetuned(base, tmp_path / "safety-src", seed=2)
    folder, file = broken(safety, models / "safety", case)
    cfg = compose_config(
        "merge", ["merge=ties", "recipe.general=general", "recipe.safety=safety"], tmp_path
    )
    line = one_error(merge, cfg, capsys)
    assert line.startswith(f"mixmerge: error: recipe.safety=safety: {file}: "), line
    assert sorted(p.name for p in models.iterdir()) == ["general", "safety"]


@pytest.mark.parametrize(
    ("key", "case"), [("model_ref", "truncated weights"), ("baseline", "empty config")]
)
def test_evaluate_model_and_baseline(base, tmp_path, cache_dir, capsys, key, case):
    from mixmerge.evaluation.run import evaluate

    folder, file = broken(base, tmp_path / "models" / "bad", case)
    shutil.copytree(base, tmp_path / "models" / "good")
    refs = (
        ["model_ref=bad", "baseline=good"]
        if key == "model_ref"
        else ["model_ref=good", "baseline=bad"]
    )
    cfg = compose_config("evaluate", ["model=tiny_random", *refs], tmp_path)
    line = one_error(evaluate, cfg, capsys)
    assert line.startswith(f"mixmerge: error: {key}: {file}: "), line
    assert (
        not list((tmp_path / "models").rglob("eval_results.json"))
        and not (tmp_path / "run").exists()
    )


def test_hf_local_judge_model(base, tmp_path, cache_dir, capsys):
    from mixmerge.evaluation.run import evaluate

    folder, file = broken(base, tmp_path / "models" / "judge", "truncated weights")
    cfg = compose_config(
        "evaluate",
        ["model=tiny_random", "model_ref=base", "judge=hf_local", "judge.model=judge"],
        tmp_path,
    )
    line = one_error(evaluate, cfg, capsys)
    assert line.startswith(f"mixmerge: error: judge.model: {file}: "), line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (b"PK\x03\x04 truncated zip", "not a readable checkpoint"),
        ("latin-1 é".encode("latin-1"), "not a readable checkpoint"),
        (None, "not a Lightning checkpoint (no state_dict)"),
    ],
)
def test_resume_checkpoint(tmp_path, cache_dir, capsys, content, message):
    from mixmerge.training.pipeline import train

    ckpt = tmp_path / "step=0000002.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, ckpt)  # a torch file, but not a training checkpoint
    else:
        ckpt.write_bytes(content)
    cfg = compose_config(
        "train", ["model=tiny_random", "logger=none", f"ckpt_path='{ckpt}'"], tmp_path
    )
    line = one_error(train, cfg, capsys)
    assert line.startswith(f"mixmerge: error: ckpt_path: {ckpt}: {message}"), line
    assert not (tmp_path / "models").exists() and not (tmp_path / "run").exists()


def test_truncated_checkpoint_found_for_resume(tmp_path):
    """The newest checkpoint of a run directory, when a rerun resumes from it."""
    from mixmerge.training.checkpointing import resolve_resume

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save(
        {"state_dict": {}, "mixmerge": {"config": {"output_name": "x"}}},
        folder / "step=0000001.ckpt",
    )
    assert resolve_resume(None, folder, "x") == folder / "step=0000001.ckpt"
    truncate(folder / "step=0000001.ckpt")
    with pytest.raises(
        MixmergeError, match=r"^resume: .*step=0000001.ckpt: not a readable checkpoint"
    ):
        resolve_resume(None, folder, "x")


def test_a_large_tokenizer_is_checked_at_its_ends(base, tmp_path, monkeypatch):
    """Above the size limit a truncated tokenizer.json is still caught, without a full parse."""
    import mixmerge.model_files

    monkeypatch.setattr(mixmerge.model_files, "FULL_TOKENIZER_CHECK_BYTES", 100)
    check_model_folder(base, key="x")  # a sound one passes the cheap check
    folder, file = broken(base, tmp_path / "m", "truncated tokenizer")
    with pytest.raises(MixmergeError, match="not a JSON object from start to end; truncated"):
        check_model_folder(folder, key="x")
