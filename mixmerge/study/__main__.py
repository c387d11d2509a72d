"""`python -m mixmerge.study experiment=<study>` — run a whole study: train, merge, evaluate, in order."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@hydra.main(version_base="1.3", config_path="../../conf", config_name="study")
@report_errors
def main(cfg: DictConfig) -> dict:
    setup_logging()
    from mixmerge.study.run import run_study

    return run_study(cfg)


if __name__ == "__main__":
    main()
