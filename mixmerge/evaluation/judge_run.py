"""`python -m mixmerge.judge`, top to bottom: labels → judge → verdicts → figures →
judge_validation.json (and a short table); or, with train=true, the learned judge's training."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import mixmerge
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.judges import check_judge, judge_stats
from mixmerge.evaluation.labels import LabelSet, check_split, load_labels
from mixmerge.evaluation.run import build_judge
from mixmerge.evaluation.validation import (
    VALIDATED_DIR,
    VALIDATION_FILE,
    format_validation,
    labels_digest,
    validate,
)
from mixmerge.io import write_json_atomic

log = logging.getLogger(__name__)


def labels_record(labels: LabelSet, split: str) -> dict[str, Any]:
    """Which labels a figure was measured on: files, their digest, the split and its counts."""
    return {
        "files": labels.files,
        "sha256": labels_digest(labels.files),
        "split": split,
        "items": {"harm": len(labels.harm), "pairs": len(labels.pairs)},
    }


def validate_judge(cfg: DictConfig, judge: Any, labels: LabelSet, split: str) -> dict[str, Any]:
    """The validation record of one judge on one split (what judge_validation.json holds)."""
    chosen = labels.split(split)
    if not len(chosen):
        raise MixmergeError(f"labels.split={split}: no labelled items in this split")
    check_judge(judge, sorted({i.language for i in chosen.harm + chosen.pairs}))
    figures = validate(judge, chosen)
    return {
        "mixmerge_version": mixmerge.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "judge": {
            "name": judge.name,
            "config": OmegaConf.to_container(cfg.judge, resolve=True),
            "stats": judge_stats(judge),
        },
        "labels": labels_record(chosen, split),
        "figures": figures,
    }


def run_judge(cfg: DictConfig) -> dict[str, Any]:
    """Validate the configured judge (or train the learned one); returns what was written."""
    split = check_split(str(cfg.labels.split))
    labels = load_labels(cfg.labels.path)
    if cfg.train:
        from mixmerge.evaluation.learned_judge import train_learned

        return train_learned(cfg, labels)
    if cfg.ship and (cfg.labels.path is not None or split != "test"):
        raise MixmergeError(
            "ship=true: only figures on the bundled labels' test split ship with the package "
            "(drop labels.path and labels.split)"
        )
    judge = build_judge(cfg.judge)
    result = validate_judge(cfg, judge, labels, split)
    run_dir = Path(cfg.paths.output_dir)
    written = write_json_atomic(run_dir / VALIDATION_FILE, result)
    if cfg.ship:
        write_json_atomic(VALIDATED_DIR / f"{judge.name}.json", result)
    print(format_validation(result))
    print(f"Validation written to {written}")
    return result
