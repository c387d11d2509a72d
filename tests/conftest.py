"""Shared fixtures: composing the real Hydra config, tiny models, and a clean CLI environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (resolvers)
from mixmerge.config import compose_config  # noqa: F401  (re-exported for the tests)

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
    # The checkout under test, not whichever mixmerge is installed (a worktree, an editable install
    # of another checkout), is the one the subprocess imports.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, "PYTHONPATH": pythonpath, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
