"""`python -m mixmerge.search` — a multi-objective search over merges (method, safety weight,
per-layer gradient, method parameters), selected on dev prompts, from conf/search.yaml."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import report_errors


@hydra.main(version_base="1.3", config_path="../../conf", config_name="search")
@report_errors
def main(cfg: DictConfig) -> dict:
    from mixmerge.search.run import search

    return search(cfg)


if __name__ == "__main__":
    main()
