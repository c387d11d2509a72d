"""Distributed strategies: Lightning's DeepSpeed on GPUs, a CPU subclass so the same ZeRO code runs
without one, and the CPU Adam that ZeRO-Offload needs."""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from mixmerge.errors import MixmergeError

log = logging.getLogger(__name__)


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """DeepSpeed ZeRO on CPU processes (gloo), for laptops and CI.

    Lightning's strategy refuses any accelerator but CUDA and passes the CUDA device index to
    `deepspeed.initialize`; these three overrides are all that stands between it and a CPU run.
    """

    def setup_environment(self) -> None:
        # The plain DDP environment (no CUDA check); it calls our setup_distributed.
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()  # gloo: DDP's backend for CPU devices

    def _setup_model_and_optimizer(
        self, model: Any, optimizer: Any, lr_scheduler: Any = None
    ) -> tuple[Any, Any]:
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),  # CPU devices have no index
            config=self.config,
            model=model,
            model_parameters=filter(lambda p: p.requires_grad, model.parameters()),
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer


def deepspeed_strategy(accelerator: str = "auto", **kwargs: Any) -> DeepSpeedStrategy:
    """Lightning's DeepSpeedStrategy where CUDA runs the job, the CPU subclass otherwise.

    `accelerator` is the trainer's (`auto`, `gpu`, `cpu`, ...), so one strategy config serves a
    laptop and a cluster; `kwargs` are DeepSpeedStrategy's (stage, offload_optimizer, ...).
    """
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return DeepSpeedStrategy(**kwargs)
    # Before deepspeed is imported: otherwise it guesses, and says so on every process.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    return CPUDeepSpeedStrategy(**kwargs)


def offloads_optimizer(strategy: Any) -> bool:
    """True for a DeepSpeed strategy whose optimizer step runs on the CPU (ZeRO-Offload)."""
    if not isinstance(strategy, DeepSpeedStrategy):
        return False
    zero = (strategy.config or {}).get("zero_optimization") or {}
    return bool(zero.get("offload_optimizer"))


ADAM_HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay", "amsgrad")


def optimizer_for_strategy(factory: Any, strategy: Any) -> Any:
    """The optimizer factory a strategy can run: under ZeRO-Offload, torch's Adam/AdamW becomes
    DeepSpeedCPUAdam with the same hyper-parameters (ZeRO-Offload cannot step torch optimizers).

    DeepSpeedCPUAdam's C++ op is compiled on first use (about 30-45 s, cached afterwards).
    """
    if not offloads_optimizer(strategy):
        return factory
    func = getattr(factory, "func", factory)
    if func is cpu_adam:
        return factory
    if func not in (torch.optim.Adam, torch.optim.AdamW):
        name = getattr(func, "__qualname__", repr(func))
        raise MixmergeError(
            f"objective.optimizer={name}: optimizer offload (strategy=deepspeed_zero3_offload) needs Adam or AdamW, "
            "which run as DeepSpeedCPUAdam"
        )
    # Start from torch's defaults so an unset weight_decay keeps AdamW's 0.01, not CPU Adam's 0.
    defaults = {
        k: p.default
        for k, p in inspect.signature(func).parameters.items()
        if k in ADAM_HYPERPARAMETERS
    }
    keywords = {
        **defaults,
        **{k: v for k, v in getattr(factory, "keywords", {}).items() if k in ADAM_HYPERPARAMETERS},
    }
    keywords["lr"] = float(keywords["lr"])
    keywords["betas"] = tuple(keywords["betas"])
    log.info("ZeRO-Offload: %s runs as DeepSpeedCPUAdam(%s)", func.__name__, keywords)
    return functools.partial(cpu_adam, adamw_mode=func is torch.optim.AdamW, **keywords)


def cpu_adam(params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """DeepSpeedCPUAdam called like a torch optimizer (`params=`), as the modules call theirs."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    return DeepSpeedCPUAdam(params, **kwargs)


def is_deepspeed(strategy: Any) -> bool:
    return isinstance(strategy, DeepSpeedStrategy)


def close_process_group() -> None:
    """Leave the process group once every collective is done.

    Lightning destroys only NCCL groups at exit, and DeepSpeed none: a rank that exits (while
    rank 0 is still exporting) with gloo's threads running aborts ("terminate called without an
    active exception"), which torchrun and SLURM report as a failed run.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_multirun_launch(trainer: Any, name: str) -> None:
    """Refuse the known Hydra + DDP pitfall before it starts.

    Lightning starts the extra processes of `ddp` and DeepSpeed by re-running the command line;
    inside a `-m` sweep that command is the whole sweep again. `ddp_spawn` starts its processes
    from inside the job, and a cluster launcher starts every rank itself.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher) and trainer.world_size > 1:
        raise MixmergeError(
            f"strategy={name} with {trainer.world_size} processes in a -m sweep: "
            "Lightning would re-run the whole sweep in each extra process; use strategy=ddp_spawn, "
            "or hydra/launcher=slurm (or torchrun/srun) to start the ranks"
        )


@contextlib.contextmanager
def zero3_model_loading(strategy: Any) -> Iterator[None]:
    """Around `from_pretrained` under ZeRO-3: tell transformers the model is being partitioned.

    Lightning builds the model inside `deepspeed.zero.Init`, so each parameter is sharded as it
    is created; transformers must know it (through its DeepSpeed config hook) to load the
    pretrained weights into the shards instead of initialising empty ones. The hook is removed
    afterwards, so a model built later on one rank (the export) loads normally.
    """
    if not (isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3):
        yield
        return
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    hf_config = HfDeepSpeedConfig(strategy.config)  # noqa: F841  (transformers holds only a weakref)
    try:
        yield
    finally:
        unset_hf_deepspeed_config()


def init_lora_under_zero3(model: Any, strategy: Any) -> None:
    """Initialise LoRA adapters created under ZeRO-3 (B = 0, so training starts from the base model).

    peft initialises an adapter's weights after creating its layers, but inside Lightning's
    `zero.Init` the layers are partitioned as they are created, so that initialisation writes to
    empty shards. It is redone here on the gathered weights (rank 0's values are kept).
    """
    if not (isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3):
        return
    import deepspeed
    from peft.tuners.lora import LoraLayer

    for name, config in model.peft_config.items():
        if config.init_lora_weights not in (True, "gaussian"):
            raise MixmergeError(
                f"peft.config.init_lora_weights={config.init_lora_weights}: under ZeRO-3 only true or gaussian"
            )
        for layer in model.modules():
            if isinstance(layer, LoraLayer) and name in layer.lora_A:
                params = [*layer.lora_A[name].parameters(), *layer.lora_B[name].parameters()]
                with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
                    layer.reset_lora_parameters(name, config.init_lora_weights)
