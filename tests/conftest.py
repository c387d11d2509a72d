"""Shared fixtures: composing the real Hydra config, tiny models, and a clean CLI environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import mixmerge.config  # noqa: F401  (resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache per test session: tiny models are built once, never in ~/.cache."""
    path = tmp_path_factory.mktemp("mixmerge-cache")
    os.environ["MIXMERGE_CACHE"] = str(path)
    return path


def compose_config(config_name: str, overrides: list[str], root: Path) -> DictConfig:
    """Compose a primary config as its entry point would, with every path under `root`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "run")
        cfg.paths.models_dir = str(root / "models")
    return cfg


TINY = [
    "model=tiny_random",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.precision=32-true",
    "data.max_length=384",
]


@pytest.fixture
def train_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """`train_cfg("data=mix_0pct_safety", ...)`: the real train config on the tiny model."""

    def make(*overrides: str) -> DictConfig:
        return compose_config("train", [*TINY, *overrides], tmp_path)

    return make


def run_cli(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args…` as a user would, in `cwd`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
