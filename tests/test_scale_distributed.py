"""Multi-process training on CPU, with CPU processes standing in for GPUs: docs/scaling.md's cluster
commands with `trainer=cpu` for `trainer=gpu`. DDP, DeepSpeed ZeRO-2/3 (+ offload), two "nodes"
under torchrun, resume of a killed ZeRO run, SIGTERM under ZeRO, and a 2-job multirun.

The first DeepSpeed run on a machine compiles DeepSpeed's CPU ops into TORCH_EXTENSIONS_DIR
(about a minute, once); these tests are `slow` (`make test-full`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mixmerge.provenance import read_provenance
from mixmerge.training.checkpointing import newest_checkpoint
from tests.helpers import run_cli

pytestmark = pytest.mark.slow

TINY = [
    "model=tiny_random",
    "logger=csv",
    "trainer=cpu",
    "trainer.precision=32-true",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "languages=en",
    "data.max_examples_per_language=16",
    "data.max_length=256",
    "objective.optimizer.lr=3e-3",
]
TWO_CPUS = [*TINY, "trainer.devices=2", "trainer.max_steps=6", "hydra.run.dir=run"]
MODEL = "outputs/models/tiny-random-sft-mix15-en"


def train_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = run_cli("mixmerge.train", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def check_model(folder: Path) -> dict[str, torch.Tensor]:
    """A plain Hugging Face folder that transformers reloads with finite outputs; its weights."""
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert torch.isfinite(model(torch.tensor([[5, 6, 7, 8]])).logits).all()
    weights = load_file(folder / "model.safetensors")
    assert not any(
        k.startswith(("model.model.", "_forward_module.")) for k in weights
    )  # no Lightning prefixes
    prov = read_provenance(folder)
    assert prov["kind"] == "train" and prov["metrics"]["steps"] > 0
    return weights


def assert_same_weights(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5
) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, cache_dir) -> Path:
    """2-process DDP: the reference every sharded run must reproduce. Returns its model folder."""
    cwd = tmp_path_factory.mktemp("ddp")
    train_cli(cwd, *TWO_CPUS, "strategy=ddp")
    # Lightning started rank 1 as a second process (a Hydra job of its own in the same folder).
    assert (cwd / "run/train_ddp_process_1.log").is_file()
    return cwd / MODEL


@pytest.fixture(scope="module")
def ddp_weights(ddp_run) -> dict[str, torch.Tensor]:
    return check_model(ddp_run)


def test_ddp_two_processes(ddp_weights, cache_dir):
    base = load_file(Path(os.environ["MIXMERGE_CACHE"]) / "models/tiny-random/model.safetensors")
    assert any(not torch.equal(base[k], ddp_weights[k]) for k in base)  # it trained


def test_lora_under_zero3_starts_from_the_base_model_and_is_merged(tmp_path, ddp_run):
    train_cli(tmp_path, *TWO_CPUS, "strategy=deepspeed_zero3", "peft=lora")
    check_model(tmp_path / MODEL)
    assert not (tmp_path / MODEL / "adapter_config.json").exists()
    # B = 0 at the start, so the first step's loss is the base model's (as in the DDP run): the
    # adapters were initialised, not left as random shards.
    first = read_provenance(tmp_path / MODEL)["metrics"]["loss_first"]
    assert first == pytest.approx(read_provenance(ddp_run)["metrics"]["loss_first"], abs=1e-5)


@pytest.mark.parametrize("stage", ["deepspeed_zero2", "deepspeed_zero3"])
def test_zero_runs_export_the_same_model_as_ddp(tmp_path, ddp_weights, stage):
    train_cli(tmp_path, *TWO_CPUS, f"strategy={stage}")
    weights = check_model(tmp_path / MODEL)
    assert_same_weights(weights, ddp_weights)  # consolidated from the shards: the same training
    ckpt = tmp_path / "run/checkpoints/step=0000006.ckpt"
    shards = sorted(p.name for p in (ckpt / "checkpoint").iterdir())
    assert [n for n in shards if "optim_states" in n] == [
        f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)
    ]

    # The converter turns the same sharded checkpoint into the same folder.
    converted = run_cli(
        "mixmerge.convert", str(ckpt), "--output-name", f"{stage}-converted", cwd=tmp_path
    )
    assert converted.returncode == 0, converted.stderr[-3000:]
    assert_same_weights(
        check_model(tmp_path / f"outputs/models/{stage}-converted"), weights, atol=0
    )


def test_zero3_offload_trains_with_deepspeed_cpu_adam(tmp_path, ddp_weights):
    result = train_cli(tmp_path, *TWO_CPUS, "strategy=deepspeed_zero3_offload")
    assert "runs as DeepSpeedCPUAdam" in result.stdout + result.stderr
    # CPU Adam with AdamW's hyper-parameters: the same steps up to float rounding.
    assert_same_weights(check_model(tmp_path / MODEL), ddp_weights, atol=1e-4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_under_torchrun(tmp_path, ddp_weights):
    """`trainer.num_nodes=2`: two torchrun launches (one per "node") of one process each."""
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "mixmerge.train",
                *TINY,
                "trainer.devices=1",
                "trainer.num_nodes=2",
                "trainer.max_steps=6",
                "strategy=deepspeed_zero3",
                "hydra.run.dir=run",
            ],
            cwd=tmp_path,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group per node, for `finish` to kill on a hang
        )
        for rank in (0, 1)
    ]
    outputs = [finish(node, timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    # Only global rank 0 exports; 2 ranks on 2 nodes train exactly as 2 ranks on one.
    assert "Model written to" in outputs[0] and "Model written to" not in outputs[1]
    assert_same_weights(check_model(tmp_path / MODEL), ddp_weights)


def start(cwd: Path, *args: str) -> subprocess.Popen:
    # Its own process group, so the test can kill a whole multi-process run at once.
    return subprocess.Popen(
        [sys.executable, "-m", "mixmerge.train", *args],
        cwd=cwd,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The run's output once it exits; a run still going after `timeout` is killed (all ranks)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"the run did not exit within {timeout} s") from None


def wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 400) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := newest_checkpoint(folder)) is not None:
            return found
        if proc.poll() is not None:
            raise AssertionError(
                f"training ended before its first checkpoint: {proc.communicate()[1][-3000:]}"
            )
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("no checkpoint appeared")


ZERO3_LONG = [
    *TINY,
    "trainer.devices=2",
    "strategy=deepspeed_zero3",
    "trainer.max_steps=40",
    "callbacks.checkpoint.every_n_train_steps=4",
    "hydra.run.dir=run",
]


def test_killed_zero3_run_resumes_from_its_sharded_checkpoint(tmp_path, cache_dir):
    proc = start(tmp_path, *ZERO3_LONG)
    wait_for_checkpoint(proc, tmp_path / "run/checkpoints")
    os.killpg(proc.pid, signal.SIGKILL)  # both ranks, as when a node dies
    proc.communicate()
    origin = newest_checkpoint(tmp_path / "run/checkpoints")
    assert origin.is_dir() and int(origin.name[5:12]) < 40
    assert not (tmp_path / MODEL).exists()

    result = train_cli(tmp_path, *ZERO3_LONG)
    assert f"Restoring states from the checkpoint path at {origin}" in result.stdout + result.stderr
    check_model(tmp_path / MODEL)
    assert read_provenance(tmp_path / MODEL)["metrics"]["steps"] == 40


@pytest.mark.parametrize("to", ["rank 0", "every rank"])
def test_sigterm_under_zero3_saves_every_shard_and_exits(tmp_path, cache_dir, to):
    proc = start(tmp_path, *ZERO3_LONG)
    first = wait_for_checkpoint(proc, tmp_path / "run/checkpoints")
    # `kill` of the launching process, or SLURM/srun signalling every task: either way the ranks
    # agree at the end of a step and stop together.
    if to == "rank 0":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    stdout, stderr = finish(proc, timeout=300)
    assert proc.returncode == 143, stderr[-4000:]
    saved = newest_checkpoint(tmp_path / "run/checkpoints")
    assert int(saved.name[5:12]) >= int(first.name[5:12])
    assert f"stopped by SIGTERM at step {int(saved.name[5:12])}" in stdout
    assert len(list((saved / "checkpoint").glob("zero_pp_rank_*_optim_states.pt"))) == 2
    assert not (tmp_path / MODEL).exists()

    result = train_cli(tmp_path, *ZERO3_LONG)
    assert f"Restoring states from the checkpoint path at {saved}" in result.stdout + result.stderr
    assert read_provenance(tmp_path / MODEL)["metrics"]["steps"] == 40


def test_multirun_with_two_process_ddp_spawn(tmp_path, cache_dir):
    """A 2-job sweep, each job on 2 spawned processes: two job folders, two models, nothing else."""
    result = run_cli(
        "mixmerge.train",
        "-m",
        *TINY,
        "trainer.devices=2",
        "trainer.max_steps=4",
        "strategy=ddp_spawn",
        "data=mix_0pct_safety,mix_100pct_safety",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    assert not (tmp_path / "outputs/train").exists()  # no stray single-run folders from the workers
    models = sorted(p.name for p in (tmp_path / "outputs/models").iterdir())
    assert models == ["tiny-random-sft-mix0-en", "tiny-random-sft-mix100-en"]
    base = load_file(Path(os.environ["MIXMERGE_CACHE"]) / "models/tiny-random/model.safetensors")
    for name in models:
        weights = check_model(tmp_path / "outputs/models" / name)
        # The spawned workers' trained weights came back to the job that exported them.
        assert any(not torch.equal(base[k], weights[k]) for k in base)
        assert read_provenance(tmp_path / "outputs/models" / name)["metrics"]["steps"] == 4
