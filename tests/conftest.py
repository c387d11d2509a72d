"""Shared fixtures: the offline environment, one tiny-model cache per session, the real train config
on the tiny model. Plain helpers (paths, `run_cli`, `TINY`) are in tests/helpers.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from mixmerge.config import compose_config
from tests.helpers import TINY

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


@pytest.fixture
def train_cfg(tmp_path: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """`train_cfg("data=mix_0pct_safety", ...)`: the real train config on the tiny model."""

    def make(*overrides: str) -> DictConfig:
        return compose_config("train", [*TINY, *overrides], tmp_path)

    return make
