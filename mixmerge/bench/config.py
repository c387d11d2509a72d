"""Compose mixmerge's own Hydra configs (as the entry points do) for the benchmark's runs."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import mixmerge.config  # noqa: F401  (registers the resolvers the configs use)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(config_name: str, overrides: list[str], root: Path) -> DictConfig:
    """The primary config `config_name` with `overrides`, every output path under `root`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    # `paths` interpolates `${hydra:runtime...}`, which needs a current Hydra config.
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "run")
        cfg.paths.models_dir = str(root / "models")
    return cfg
