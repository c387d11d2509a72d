"""Resume: a crashed, killed or pre-empted run continues from its newest checkpoint with the same
data order, optimizer and schedule, and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mixmerge.config import compose_config
from mixmerge.convert import main as convert_main
from mixmerge.errors import MixmergeError
from mixmerge.provenance import read_provenance
from mixmerge.training.checkpointing import newest_checkpoint, resolve_resume
from mixmerge.training.pipeline import train
from tests.helpers import TINY, run_cli

# 16 examples in batches of 4: an epoch is 4 steps, so 10 steps cross two epoch boundaries.
SMALL = [
    "languages=en",
    "data.max_examples_per_language=16",
    "data.batch_size=4",
    "data.max_length=256",
    "objective.optimizer.lr=3e-3",
    "trainer.max_steps=10",
]
CLI = [
    "model=tiny_random",
    "logger=csv",
    "trainer=cpu",
    "trainer.precision=32-true",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "languages=en",
    "data.max_examples_per_language=16",
    "data.max_length=256",
    "hydra.run.dir=run",
]


class BatchRecorder(Callback):
    """Appends (step, fingerprint of the batch) for every batch trained on."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        ids = batch["input_ids"]
        with self.path.open("a") as handle:
            handle.write(
                json.dumps(
                    [
                        trainer.global_step,
                        ids.shape[0],
                        int((ids * torch.arange(ids.shape[1])).sum()),
                    ]
                )
                + "\n"
            )


class CrashAt(Callback):
    """A crash (not a clean stop) once `step` optimizer steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def configure(root: Path, every: int, crash_at: int | None = None):
    cfg = compose_config("train", [*TINY, *SMALL], root)
    callbacks = {
        "checkpoint": {
            "_target_": "mixmerge.training.checkpointing.RunCheckpoint",
            "dirpath": str(root / "run/checkpoints"),
            "every_n_train_steps": every,
        },
        "recorder": {"_target_": f"{__name__}.BatchRecorder", "path": str(root / "batches.jsonl")},
    }
    if crash_at is not None:
        callbacks["crash"] = {"_target_": f"{__name__}.CrashAt", "step": crash_at}
    with open_dict(cfg):
        cfg.callbacks = OmegaConf.create(callbacks)
    return cfg


def batches(root: Path) -> list[list[int]]:
    return [json.loads(line) for line in (root / "batches.jsonl").read_text().splitlines()]


def weights(cfg) -> dict[str, torch.Tensor]:
    return load_file(Path(cfg.paths.models_dir) / cfg.output_name / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    """The reference: the same 10 steps without interruption; its config and its batches."""
    root = tmp_path_factory.mktemp("whole")
    whole = configure(root, every=3)
    assert train(whole)["steps"] == 10
    reference = batches(root)
    assert [step for step, *_ in reference] == list(range(10))
    return whole, reference


@pytest.mark.parametrize(
    ("every", "crash_at", "resume_at"),
    [
        (3, 7, 6),
        (4, 9, 8),
    ],  # mid-epoch (epoch 1, third batch); at an epoch boundary (end of epoch 1)
)
def test_crashed_run_resumes_and_matches_an_uninterrupted_run(
    tmp_path, uninterrupted, every, crash_at, resume_at
):
    whole, reference = uninterrupted
    crashed = configure(tmp_path / "resumed", every=every, crash_at=crash_at)
    with pytest.raises(RuntimeError, match=f"simulated crash at step {crash_at}"):
        train(crashed)
    ckpt_dir = tmp_path / "resumed/run/checkpoints"
    assert [p.name for p in ckpt_dir.iterdir()] == [
        f"step={resume_at:07d}.ckpt"
    ]  # only the newest is kept
    assert not (Path(crashed.paths.models_dir) / crashed.output_name).exists()

    # The same command again, in the same run directory: it resumes from the newest checkpoint.
    resumed = configure(tmp_path / "resumed", every=every)
    metrics = train(resumed)
    assert metrics["steps"] == 10  # the loss history came back with the checkpoint

    seen = batches(tmp_path / "resumed")
    # Before the crash: the batches of steps 0..crash_at (those after `resume_at` are lost with
    # it); after the restart: the batches of steps resume_at..9 again.
    assert [step for step, *_ in seen] == [*range(crash_at + 1), *range(resume_at, 10)]
    assert seen[: crash_at + 1] == reference[: crash_at + 1]
    # The same batches in the same order after the restart, across the epoch boundary.
    assert seen[crash_at + 1 :] == reference[resume_at:]
    assert reference[4:8] != reference[0:4]  # ...and each epoch is shuffled anew

    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:  # optimizer moments and the LR schedule were restored too
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    prov = read_provenance(Path(resumed.paths.models_dir) / resumed.output_name)
    assert prov["metrics"]["steps"] == 10


def test_resume_resolution(tmp_path):
    assert resolve_resume(None, tmp_path / "none") is None
    assert resolve_resume("last", tmp_path / "none") is None
    with pytest.raises(MixmergeError, match=r"ckpt_path=.*nope.ckpt: no such checkpoint"):
        resolve_resume(str(tmp_path / "nope.ckpt"), tmp_path)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"state_dict": {}}, folder / "step=0000010.ckpt")  # read before resuming
    # A DeepSpeed folder without its `latest` tag was cut off mid-save: never resume from it.
    (folder / "step=0000020.ckpt").mkdir()
    assert newest_checkpoint(folder).name == "step=0000010.ckpt"
    (folder / "step=0000020.ckpt/latest").write_text("checkpoint")
    (folder / "step=0000020.ckpt/checkpoint").mkdir()
    torch.save({}, folder / "step=0000020.ckpt/checkpoint/mp_rank_00_model_states.pt")
    assert resolve_resume(None, folder).name == "step=0000020.ckpt"
    assert resolve_resume("last", folder).name == "step=0000020.ckpt"
    assert resolve_resume(str(folder / "step=0000010.ckpt"), folder).name == "step=0000010.ckpt"


def test_a_run_directory_reused_for_another_model_is_not_resumed(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "step=0000008.ckpt/checkpoint").mkdir(parents=True)  # a DeepSpeed checkpoint folder
    (folder / "step=0000008.ckpt/latest").write_text("checkpoint")
    record = {"state_dict": {}, "mixmerge": {"config": {"output_name": "model-a"}}}
    torch.save(record, folder / "step=0000008.ckpt/checkpoint/mp_rank_00_model_states.pt")
    torch.save(record, folder / "step=0000004.ckpt")
    assert resolve_resume(None, folder, "model-a").name == "step=0000008.ckpt"
    with pytest.raises(
        MixmergeError, match=r"step=0000008.ckpt: a checkpoint of output_name=model-a, not model-b"
    ):
        resolve_resume("last", folder, "model-b")
    # Named explicitly, any checkpoint is a valid start (e.g. another model's, on purpose).
    assert (
        resolve_resume(str(folder / "step=0000004.ckpt"), folder, "model-b").name
        == "step=0000004.ckpt"
    )


def start_training(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mixmerge.train", *CLI, *args],
        cwd=cwd,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = newest_checkpoint(folder)
        if found is not None:
            return found
        if proc.poll() is not None:
            raise AssertionError(
                f"training ended before its first checkpoint: {proc.communicate()[1][-3000:]}"
            )
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


def cli_config(root: Path, *args: str):
    """The config the CLI composes for `CLI + args` in `root`, for continuing a CLI run in-process."""
    cfg = compose_config("train", [a for a in CLI if not a.startswith("hydra.")] + list(args), root)
    with open_dict(cfg):
        cfg.paths.models_dir = str(root / "outputs/models")
    return cfg


def test_sigkill_after_first_checkpoint_then_rerun_resumes_to_the_configured_steps(
    tmp_path, cache_dir
):
    args = ["trainer.max_steps=20", "callbacks.checkpoint.every_n_train_steps=5"]
    proc = start_training(tmp_path, *args)
    wait_for_checkpoint(proc, tmp_path / "run/checkpoints")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    model = tmp_path / "outputs/models/tiny-random-sft-mix15-en"
    assert not model.exists()
    origin = newest_checkpoint(tmp_path / "run/checkpoints")
    assert int(origin.name[5:12]) < 20

    # The same run again in the same run directory (here in-process): it resumes by itself.
    metrics = train(cli_config(tmp_path, *args))
    assert metrics["steps"] == 20  # the killed run's steps up to its checkpoint, then the rest
    assert read_provenance(model)["metrics"]["steps"] == 20
    # Lightning never deletes the checkpoint a run resumed from; the newest is the finished state.
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == [
        origin.name,
        "step=0000020.ckpt",
    ]

    # Once more: it would resume at the end, but must not replace the finished model.
    before = (model / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(MixmergeError, match="already holds a finished model"):
        train(cli_config(tmp_path, *args))
    assert (model / "model.safetensors").stat().st_mtime_ns == before


def test_sigterm_saves_a_checkpoint_exits_cleanly_and_resumes(tmp_path, cache_dir):
    args = ["trainer.max_steps=20", "callbacks.checkpoint.every_n_train_steps=3"]
    proc = start_training(tmp_path, *args)
    wait_for_checkpoint(proc, tmp_path / "run/checkpoints")
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the run did not exit after SIGTERM") from None
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    saved = newest_checkpoint(tmp_path / "run/checkpoints")
    assert f"stopped by SIGTERM at step {int(saved.name[5:12])}; checkpoint {saved}" in stdout
    assert f"hydra.run.dir={tmp_path / 'run'}" in stdout
    assert not (tmp_path / "outputs/models/tiny-random-sft-mix15-en").exists()
    state = torch.load(saved, map_location="cpu", weights_only=False)
    assert (
        state["global_step"] == int(saved.name[5:12])
        and state["optimizer_states"]
        and state["lr_schedulers"]
    )

    # Resume (in-process here) with `ckpt_path=last`: the checkpoint SIGTERM left is the start.
    cfg = cli_config(tmp_path, *args, "ckpt_path=last")
    assert resolve_resume(cfg.ckpt_path, tmp_path / "run/checkpoints") == saved
    assert train(cfg)["steps"] == 20
    model = tmp_path / "outputs/models/tiny-random-sft-mix15-en"
    assert read_provenance(model)["metrics"]["steps"] == 20
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(AutoModelForCausalLM.from_pretrained(model)(ids).logits).all()


def test_convert_a_checkpoint_to_a_model_folder(tmp_path, cache_dir):
    cfg = cli_config(tmp_path, "trainer.max_steps=4", "callbacks.checkpoint.every_n_train_steps=4")
    train(cfg)
    trained = tmp_path / "outputs/models/tiny-random-sft-mix15-en"
    ckpt = tmp_path / "run/checkpoints/step=0000004.ckpt"

    converted = run_cli("mixmerge.convert", str(ckpt), "--output-name", "from-ckpt", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr[-3000:]
    out = tmp_path / "outputs/models/from-ckpt"
    assert f"Model written to {out}" in converted.stdout
    a, b = load_file(trained / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and not any(k.startswith("model.model.") for k in b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    prov = read_provenance(out)
    assert (
        prov["kind"] == "train" and prov["name"] == "from-ckpt" and prov["checkpoint"] == str(ckpt)
    )
    assert prov["metrics"]["global_step"] == 4 and prov["metrics"]["steps"] == 4
    assert prov["mixture"] == read_provenance(trained)["mixture"]


@pytest.mark.parametrize(
    ("checkpoint", "name", "message"),
    [
        (
            "bad.ckpt",
            "taken",
            "taken already exists (pass --output-name NAME, or --overwrite to replace it)",
        ),
        ("nope.ckpt", "new", "nope.ckpt: no such checkpoint"),
        ("bad.ckpt", "new", "bad.ckpt: not a readable checkpoint"),
        (
            "folder.ckpt",
            "new",
            "folder.ckpt: not a checkpoint (expected a .ckpt file, or a DeepSpeed folder",
        ),
    ],
)
def test_convert_refuses_clearly(tmp_path, capsys, checkpoint, name, message):
    (tmp_path / "taken").mkdir()
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "folder.ckpt").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        convert_main(
            [str(tmp_path / checkpoint), "--output-name", name, "--models-dir", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    errors = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("mixmerge: error:")
    ]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "new").exists()
