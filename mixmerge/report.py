"""`python -m mixmerge.report` — the study's tables (Markdown, CSV) and figures (PNG) from every
evaluated model under outputs/ and multirun/, from the Hydra config in conf/report.yaml."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
@report_errors
def main(cfg: DictConfig) -> dict:
    setup_logging()
    from mixmerge.reporting.run import report

    return report(cfg)


if __name__ == "__main__":
    main()
