"""Instantiating the `callbacks` and `logger` groups, and closing loggers, in one place for every
entry point (as lightning-hydra-template's `utils/instantiators.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_nodes(nodes: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a dict-shaped group (callbacks, loggers); other
    entries (a group set to null, a plain value) are skipped."""
    return [
        instantiate(node)
        for node in (nodes or {}).values()
        if isinstance(node, DictConfig) and "_target_" in node
    ]


def instantiate_loggers(cfg: DictConfig) -> list[Any]:
    """The run's loggers (`logger` group); none with `logger=none`."""
    return instantiate_nodes(cfg.get("logger"))


def close_loggers(loggers: Iterable[Any]) -> None:
    """Flush and finalize loggers a run used outside a Lightning Trainer (which does this itself
    for training), and finish their W&B run, so each merge, evaluation, report or search of a
    multirun is its own W&B run."""
    for logger in loggers:
        logger.save()
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
