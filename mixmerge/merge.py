"""`python -m mixmerge.merge` — merge trained models with mergekit, from the Hydra config in conf/merge.yaml."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@hydra.main(version_base="1.3", config_path="../conf", config_name="merge")
@report_errors
def main(cfg: DictConfig) -> dict:
    setup_logging()
    from mixmerge.merging.pipeline import merge

    return merge(cfg)


if __name__ == "__main__":
    main()
