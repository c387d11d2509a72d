"""The scale-out configs: strategies build the right Lightning objects on CPU and GPU machines,
ZeRO-Offload gets DeepSpeed's CPU Adam, and the SLURM launcher composes into a valid sbatch job."""

from __future__ import annotations

import functools

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

from mixmerge.config import compose_config
from mixmerge.errors import MixmergeError
from mixmerge.training.pipeline import build_strategy
from mixmerge.training.strategies import CPUDeepSpeedStrategy, cpu_adam, optimizer_for_strategy
from tests.helpers import run_cli


def strategy_for(tmp_path, *overrides: str):
    return build_strategy(compose_config("train", list(overrides), tmp_path))


@pytest.mark.parametrize(("option", "start_method"), [("ddp", "popen"), ("ddp_spawn", "spawn")])
def test_ddp_configs(tmp_path, option, start_method):
    strategy = strategy_for(tmp_path, "trainer=cpu", "trainer.devices=2", f"strategy={option}")
    assert type(strategy) is DDPStrategy and strategy._start_method == start_method


def test_auto_is_passed_through_as_a_name(tmp_path):
    assert strategy_for(tmp_path, "strategy=auto") == "auto"


@pytest.mark.parametrize(
    ("option", "stage", "offload"),
    [
        ("deepspeed_zero2", 2, False),
        ("deepspeed_zero3", 3, False),
        ("deepspeed_zero3_offload", 3, True),
    ],
)
def test_deepspeed_configs_pick_the_cpu_strategy_on_cpu_and_lightnings_on_gpu(
    tmp_path, option, stage, offload
):
    cfg = compose_config(
        "train", ["trainer=cpu", "trainer.devices=2", f"strategy={option}", "logger=none"], tmp_path
    )
    strategy = build_strategy(cfg)
    assert type(strategy) is CPUDeepSpeedStrategy
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == stage
    assert ("offload_optimizer" in zero and "offload_param" in zero) == offload
    # Lightning accepts it for two CPU processes (its stock strategy refuses a CPU accelerator).
    trainer = instantiate(
        cfg.trainer, strategy=strategy, logger=False, callbacks=[], enable_progress_bar=False
    )
    assert trainer.strategy is strategy and trainer.num_devices == 2
    assert [d.type for d in strategy.parallel_devices] == ["cpu", "cpu"]

    # The same config on a GPU machine is Lightning's own DeepSpeedStrategy.
    on_gpu = strategy_for(tmp_path, "trainer=gpu", "trainer.devices=8", f"strategy={option}")
    assert (
        type(on_gpu) is DeepSpeedStrategy and on_gpu.config["zero_optimization"]["stage"] == stage
    )


def test_offload_runs_adamw_as_deepspeed_cpu_adam_with_the_same_hyperparameters(tmp_path):
    cfg = compose_config("train", ["trainer=cpu", "strategy=deepspeed_zero3_offload"], tmp_path)
    strategy = build_strategy(cfg)
    factory = optimizer_for_strategy(instantiate(cfg.objective.optimizer), strategy)
    assert factory.func is cpu_adam
    opt = cfg.objective.optimizer
    assert factory.keywords == {
        "adamw_mode": True,
        "lr": opt.lr,
        "weight_decay": opt.weight_decay,
        "betas": tuple(opt.betas),
        "eps": 1e-8,  # torch's default: the config does not set it
        "amsgrad": False,
    }
    # Unset hyper-parameters keep torch's defaults (AdamW's weight decay is 0.01, CPU Adam's 0).
    adam = optimizer_for_strategy(functools.partial(torch.optim.AdamW, lr=1e-3), strategy)
    assert adam.keywords["weight_decay"] == 0.01 and adam.keywords["adamw_mode"] is True
    plain_adam = optimizer_for_strategy(functools.partial(torch.optim.Adam), strategy)
    assert plain_adam.keywords["adamw_mode"] is False and plain_adam.keywords["weight_decay"] == 0

    # Without offload, the optimizer is left alone.
    zero3 = strategy_for(tmp_path, "trainer=cpu", "strategy=deepspeed_zero3")
    original = instantiate(cfg.objective.optimizer)
    assert optimizer_for_strategy(original, zero3) is original
    with pytest.raises(
        MixmergeError, match=r"objective.optimizer=SGD: optimizer offload .* needs Adam or AdamW"
    ):
        optimizer_for_strategy(functools.partial(torch.optim.SGD, lr=0.1), strategy)


def test_slurm_launcher_composes_into_an_sbatch_job(tmp_path):
    cfg = compose_config(
        "train",
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "trainer=gpu",
            "trainer.devices=8",
            "trainer.num_nodes=2",
            "strategy=deepspeed_zero3",
        ],
        tmp_path,
    )
    launcher = instantiate(cfg.hydra.launcher)  # resolves ${trainer.devices} and friends
    assert type(launcher).__name__ == "SlurmLauncher"
    params = launcher.params
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 8, 8)

    # Every parameter is one submitit's SLURM executor knows (generic names mapped as it maps them)...
    equivalent = SlurmExecutor._equivalence_dict()
    slurm = {
        equivalent.get(k, k): v
        for k, v in params.items()
        if k not in ("submitit_folder", "max_num_timeout")
    }
    assert set(slurm) <= SlurmExecutor._valid_parameters()
    # ...and they make a job of 2 nodes x 8 tasks x 8 GPUs that is warned before its time limit.
    sbatch = _make_sbatch_string(command="python -m mixmerge.train", folder=tmp_path, **slurm)
    for line in (
        "--nodes=2",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
        "--partition=gpu",
        "--time=1440",
        "--signal=USR2@120",
        "--cpus-per-task=8",
    ):
        assert f"#SBATCH {line}\n" in sbatch, sbatch


def test_a_sweep_with_a_relaunching_strategy_is_refused_before_training(tmp_path, cache_dir):
    """The Hydra + DDP pitfall: `ddp` re-runs the command line, which in a sweep is the sweep."""
    result = run_cli(
        "mixmerge.train",
        "-m",
        "model=tiny_random",
        "logger=none",
        "trainer=cpu",
        "trainer.devices=2",
        "strategy=ddp",
        "languages=en",
        "data.max_examples_per_language=8",
        "data=mix_0pct_safety,mix_100pct_safety",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("mixmerge: error:")]
    assert len(errors) == 1 and "strategy=ddp with 2 processes in a -m sweep" in errors[0]
    assert "use strategy=ddp_spawn, or hydra/launcher=slurm" in errors[0]
    assert not (tmp_path / "outputs/models").exists()
    assert not list((tmp_path / "sweep").rglob("*.ckpt"))
