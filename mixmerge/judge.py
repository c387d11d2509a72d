"""`python -m mixmerge.judge judge=<judge>` — validate a judge against labelled real model outputs
(agreement, kappa, precision/recall of "harmful", pairwise agreement), or `train=true` to train the
learned offline judge; from the Hydra config in conf/judge_validate.yaml."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@hydra.main(version_base="1.3", config_path="../conf", config_name="judge_validate")
@report_errors
def main(cfg: DictConfig) -> dict:
    setup_logging()
    from mixmerge.evaluation.judge_run import run_judge

    return run_judge(cfg)


if __name__ == "__main__":
    main()
