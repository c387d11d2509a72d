"""Faults (issue 17, item 4): two writers of one output name, a full disk during export, and
SIGKILL during merge, evaluate and report. Nothing half-written may look finished, and a rerun
completes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixmerge.config import compose_config
from mixmerge.errors import EXIT_CODE, MixmergeError, report_errors
from mixmerge.io import atomic_dir, write_json_atomic
from tests.helpers import ROOT, run_cli
from tests.merge_helpers import make_base, make_finetuned


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def leftovers(parent: Path) -> list[str]:
    """Temporary folders, replaced folders and lock files: none may stay behind a finished write."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --- two writers of one name --------------------------------------------------------------------


def test_a_second_writer_of_the_same_name_stops_while_the_first_writes(tmp_path):
    final = tmp_path / "models" / "merge-x"
    with atomic_dir(final) as tmp:
        (tmp / "who").write_text("first")
        second = pytest.raises(MixmergeError, match=r"merge-x: another process is writing this")
        with second, atomic_dir(final):
            pass
    assert (final / "who").read_text() == "first"
    assert leftovers(final.parent) == []


def test_a_folder_that_appears_meanwhile_is_never_replaced(tmp_path):
    """A writer that does not take the lock (another machine on a shared disk) finishes first."""
    final = tmp_path / "merge-x"
    refused = pytest.raises(MixmergeError, match="appeared while this run was writing it")
    with refused, atomic_dir(final) as tmp:
        (tmp / "who").write_text("late")
        final.mkdir()
        (final / "who").write_text("early")
    assert (final / "who").read_text() == "early" and leftovers(tmp_path) == []


WRITER = """
import sys, time
from pathlib import Path
from mixmerge.errors import report_errors
from mixmerge.io import atomic_dir

@report_errors
def write(final, who):
    with atomic_dir(Path(final)) as tmp:
        (tmp / "who").write_text(who)
        time.sleep(3)  # the other process starts meanwhile
    print("wrote", who)

write(sys.argv[1], sys.argv[2])
"""


def test_two_processes_one_name_one_wins(tmp_path):
    final = tmp_path / "models" / "tiny-sft"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(final), who],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, EXIT_CODE], results
    winner = next(out.split()[-1] for code, out, _ in results if code == 0)
    loser_err = next(err for code, _, err in results if code == EXIT_CODE)
    lines = [line for line in loser_err.splitlines() if line.startswith("mixmerge: error:")]
    assert len(lines) == 1 and "another process is writing this output now" in lines[0]
    assert (final / "who").read_text() == winner and leftovers(final.parent) == []


def test_a_killed_writers_temporary_folder_is_removed_by_the_next(tmp_path):
    (tmp_path / ".tmp-merge-x-0123abcd").mkdir()  # left by a SIGKILL
    (tmp_path / ".tmp-merge-x-w0.3-0123abcd").mkdir()  # another name's: not touched
    with atomic_dir(tmp_path / "merge-x") as tmp:
        (tmp / "f").write_text("x")
    assert leftovers(tmp_path) == [".tmp-merge-x-w0.3-0123abcd"]


# --- a full disk --------------------------------------------------------------------------------


def test_full_disk_in_atomic_dir_keeps_the_previous_output(tmp_path):
    final = tmp_path / "merge-x"
    final.mkdir()
    (final / "model.safetensors").write_text("previous")
    with pytest.raises(MixmergeError) as err, atomic_dir(final, overwrite=True) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(err.value) == (
        f"{final}: No space left on device while writing it; the previous merge-x is unchanged"
    )
    assert (final / "model.safetensors").read_text() == "previous" and leftovers(tmp_path) == []


def test_full_disk_in_write_json_atomic(tmp_path, monkeypatch):
    path = tmp_path / "eval_results.json"
    write_json_atomic(path, {"v": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(
        MixmergeError, match="No space left on device while writing it; the previous"
    ):
        write_json_atomic(path, {"v": 2})
    assert path.read_text() == '{\n  "v": 1\n}\n' and sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["eval_results.json"]


def test_full_disk_during_a_merge_export(tmp_path, capsys, monkeypatch):
    """Through the merge entry: exit 2, one line, the previous model of that name intact."""
    import mergekit.merge

    from mixmerge.merging.pipeline import merge

    models = tmp_path / "models"
    base = make_base(tmp_path / "base")
    make_finetuned(base, models / "general", seed=1)
    make_finetuned(base, models / "safety", seed=2)
    previous = shutil.copytree(models / "general", models / "merged")
    before = digest(previous)

    def full_disk(config, out_path, **kwargs):
        (Path(out_path) / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mergekit.merge, "run_merge", full_disk)
    cfg = compose_config(
        "merge",
        ["recipe.general=general", "recipe.safety=safety", "output_name=merged", "overwrite=true"],
        tmp_path,
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        report_errors(merge)(cfg)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mixmerge: error:")]  # noqa: E741
    assert exc.value.code == EXIT_CODE and len(lines) == 1
    assert lines[0] == (
        f"mixmerge: error: {previous}: No space left on device while writing it; "
        "the previous merged is unchanged"
    )
    assert digest(previous) == before and leftovers(models) == []


# --- SIGKILL ------------------------------------------------------------------------------------

# Runs an entry point with one of its steps wrapped: the step runs (or not), a marker file
# appears, and the process waits to be killed.
KILLABLE = """
import pathlib, importlib, runpy, sys, time
target, attr, when, marker, module = sys.argv[1:6]
mod = importlib.import_module(target)
original = getattr(mod, attr)
def stalled(*args, **kwargs):
    if when == "after":
        original(*args, **kwargs)
    pathlib.Path(marker).touch()
    time.sleep(600)
setattr(mod, attr, stalled)
sys.argv = [module, *sys.argv[6:]]
runpy.run_module(module, run_name="__main__")
"""


def kill_midway(cwd: Path, target: str, attr: str, when: str, module: str, *args: str) -> None:
    marker = cwd / "reached"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, target, attr, when, str(marker), module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "the stalled step was never reached"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    marker.unlink()


@pytest.mark.slow
def test_sigkill_during_merge_then_rerun(tmp_path):
    models = tmp_path / "outputs" / "models"
    base = make_base(tmp_path / "base")
    make_finetuned(base, models / "general", seed=1)
    make_finetuned(base, models / "safety", seed=2)
    args = ["recipe.general=general", "recipe.safety=safety", "hydra.run.dir=run"]
    # Killed after mergekit wrote every tensor, before the provenance and the rename.
    kill_midway(tmp_path, "mergekit.merge", "run_merge", "after", "mixmerge.merge", *args)
    final = models / "merge-objective-linear-w0.5"
    assert not final.exists()
    # The temporary folder, which looks unfinished, and the (no longer held) lock file.
    assert [n.split("-")[0] for n in leftovers(models)] == [".merge", ".tmp"]
    result = run_cli("mixmerge.merge", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (final / "mixmerge.json").is_file() and leftovers(models) == []


@pytest.mark.slow
def test_sigkill_during_evaluate_then_rerun(tmp_path):
    args = [
        "model=tiny_random",
        "model_ref=base",
        "languages=en",
        "max_prompts_per_language=2",
        "generation.max_new_tokens=4",
        "bootstrap.samples=10",
        "hydra.run.dir=run",
    ]
    cache = tmp_path / "cache"
    os.environ["MIXMERGE_CACHE"] = str(cache)  # (restored by the cache_dir fixture of other tests)
    try:
        kill_midway(
            tmp_path, "mixmerge.evaluation.run", "judge_all", "before", "mixmerge.evaluate", *args
        )
        assert list(tmp_path.rglob("eval_results.json")) == []
        result = run_cli("mixmerge.evaluate", *args, cwd=tmp_path)
    finally:
        os.environ.pop("MIXMERGE_CACHE", None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(cache.rglob("eval_results.json"))) == 1
    assert (tmp_path / "run" / "eval_results.json").is_file()


@pytest.mark.slow
def test_sigkill_during_report_then_rerun(tmp_path):
    from tests.report_helpers import build_study

    build_study(tmp_path, tmp_path / "outputs/models")
    kill_midway(
        tmp_path,
        "mixmerge.reporting.run",
        "_publish",
        "before",
        "mixmerge.report",
        "hydra.run.dir=run",
    )
    assert not (tmp_path / "run" / "report.md").exists()
    assert not (tmp_path / "outputs/report/latest").exists()
    result = run_cli("mixmerge.report", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "report.md").is_file()
    assert (tmp_path / "outputs/report/latest/report.md").is_file()


def test_full_disk_reported_by_safetensors_is_one_line_too(tmp_path):
    """safetensors' Rust serializer (every model file) reports a full disk as its own exception
    type with the OS error in its text, not as an OSError: still one line, nothing left."""
    from safetensors import SafetensorError

    final = tmp_path / "gemma3-270m-chat-sft-mix15-all"
    with pytest.raises(MixmergeError) as err, atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"\0" * 100)
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )
    assert str(err.value) == (
        f"{final}: No space left on device while writing it; nothing was written to {final.name}"
    )
    assert leftovers(tmp_path) == [] and not final.exists()


def test_other_errors_inside_atomic_dir_pass_through(tmp_path):
    with pytest.raises(ValueError, match="os error 2"), atomic_dir(tmp_path / "m") as tmp:
        (tmp / "f").write_text("x")
        raise ValueError("not a disk error (os error 2)")  # ENOENT: not the disk refusing
    assert leftovers(tmp_path) == []
