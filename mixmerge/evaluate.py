"""`python -m mixmerge.evaluate model_ref=<name or path>` — harm rate and win rate per language
against a baseline, from the Hydra config in conf/evaluate.yaml."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@report_errors
def main(cfg: DictConfig) -> dict:
    setup_logging()
    from mixmerge.evaluation.run import evaluate

    return evaluate(cfg)


if __name__ == "__main__":
    main()
