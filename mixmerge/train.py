"""`python -m mixmerge.train` — SFT (and preference) training from the Hydra config in conf/train.yaml."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@report_errors
def main(cfg: DictConfig) -> dict:
    setup_logging()
    from mixmerge.training.pipeline import train

    return train(cfg)


if __name__ == "__main__":
    main()
