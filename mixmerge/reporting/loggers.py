"""The report's tables and figures to the configured loggers (W&B: wandb.Table and wandb.Image
through Lightning's WandbLogger, offline unless a key is set)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from mixmerge.config import resolved_config
from mixmerge.instantiators import close_loggers, instantiate_loggers


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """NaN as None, so W&B shows an empty cell rather than the string 'nan'."""
    return frame.astype(object).where(frame.notna(), None)


def log_report(
    cfg: DictConfig,
    frames: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Path],
    summary: Mapping[str, Any],
) -> list[str]:
    """Log to every logger of the `logger` group; returns the loggers' class names."""
    loggers = instantiate_loggers(cfg)
    for logger in loggers:
        logger.log_hyperparams({"config": resolved_config(cfg)})
        logger.log_metrics({f"report/{k}": float(v) for k, v in summary.items()})
        if hasattr(logger, "log_table"):
            for key, frame in frames.items():
                logger.log_table(key=f"report/{key}", dataframe=_plain(frame))
        if hasattr(logger, "log_image"):
            for key, path in figures.items():
                logger.log_image(key=f"report/{key}", images=[str(path)])
    close_loggers(loggers)
    return [type(logger).__name__ for logger in loggers]
