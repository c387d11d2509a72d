"""OmegaConf resolvers used by the configs (imported by every entry point before Hydra composes)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision() -> str:
    """bf16 autocast where the hardware runs it natively (recent GPUs, bf16-capable CPUs), else fp32."""
    import torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def describe_precision(precision: str) -> str:
    """The training precision with the reason a CPU run gets it, for the run's log: the same
    recipe takes about three times as long on a CPU without native bf16 (docs/performance.md)."""
    import torch

    if torch.cuda.is_available() or precision not in ("32-true", "bf16-mixed"):
        return precision
    if cpu_has_bf16():
        return f"{precision} (this CPU has native bf16: AVX512-BF16 or AMX)"
    return (
        f"{precision} (this CPU has no native bf16 - no AVX512-BF16 or AMX - so bf16 would be "
        "emulated; expect several times the step time of a bf16-capable CPU)"
    )


def native_dtype() -> str:
    """The dtype inference runs fastest in without loss of range: bfloat16 where training would
    use bf16 autocast (bf16 GPUs, AVX512-BF16/AMX CPUs), else float32."""
    return "bfloat16" if auto_precision() == "bf16-mixed" else "float32"


def wandb_offline() -> bool:
    """Log to W&B offline unless a key is configured (WANDB_API_KEY, or WANDB_MODE=online after login)."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    return not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online")


def register_resolvers() -> None:
    from mixmerge.names import weight_suffix  # the shared core, not a stage

    resolvers = {
        "mixmerge.precision": auto_precision,
        "mixmerge.native_dtype": native_dtype,
        "mixmerge.wandb_offline": wandb_offline,
        "mixmerge.weight_suffix": weight_suffix,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config as plain data with interpolations resolved (Hydra's own node left out)."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        if OmegaConf.is_config(cfg[key])
        else cfg[key]
        for key in cfg
        if key != "hydra"
    }


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_entry(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose another entry point's config (e.g. evaluate from inside merge), reusing the running
    Hydra app's search path when there is one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def compose_config(config_name: str, overrides: list[str], root: Path) -> DictConfig:
    """Compose a primary config as its entry point would, outside a Hydra app, with every output
    path under `root` (tests, the benchmark)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # `paths` interpolates `${hydra:runtime...}`
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "run")
        cfg.paths.models_dir = str(root / "models")
    return cfg
