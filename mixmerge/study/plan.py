"""Expand a study's stages into jobs and work out which outputs each job writes.

A stage is one Hydra multirun of one command (train, merge, evaluate): its `sweep` is the
cartesian grid, `overrides` apply to every job, and `study.settings.<command>` holds the scale
(model, trainer, judge). A job's output name is found by composing that command's real config,
so the runner and the commands can never disagree about names.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose
from omegaconf import DictConfig, ListConfig

from mixmerge.artifacts import PROVENANCE_FILE, RESULTS_FILE
from mixmerge.errors import MixmergeError
from mixmerge.names import check_plain_name

COMMANDS = ("train", "merge", "evaluate")


@dataclass
class Stage:
    name: str
    command: str
    jobs: list[list[str]]  # per job: its own overrides (the sweep point)
    common: list[str]  # overrides shared by every job (settings + stage overrides)
    outputs: list[str] = field(
        default_factory=list
    )  # model names (train, merge) or evaluated models
    # evaluate: the prompts and decoding digests its jobs record (evaluation.run.evaluation_key)
    expect: dict[str, str] = field(default_factory=dict)

    def sweep_args(self) -> list[str]:
        """The multirun's command-line: `key=v1,v2` for every key that varies, plus the common ones."""
        keys: dict[str, list[str]] = {}
        for job in self.jobs:
            for item in job:
                key, value = item.split("=", 1)
                if value not in keys.setdefault(key, []):
                    keys[key].append(value)
        return [f"{k}={','.join(v)}" for k, v in keys.items()] + self.common


def _value(value: Any) -> str:
    if isinstance(value, (list, ListConfig)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def _grid(sweep: DictConfig | None) -> list[list[str]]:
    if not sweep:
        return [[]]
    keys = list(sweep.keys())
    values = [
        [_value(v) for v in (sweep[k] if isinstance(sweep[k], ListConfig) else [sweep[k]])]
        for k in keys
    ]
    return [
        [f"{k}={v}" for k, v in zip(keys, point, strict=False)]
        for point in itertools.product(*values)
    ]


def output_name(command: str, overrides: list[str]) -> str:
    """Compose the command's real config with these overrides and read its output name."""
    try:
        cfg = compose(config_name=command, overrides=overrides)
    except Exception as err:  # Hydra's errors for a wrong key or option in the study file
        raise MixmergeError(
            f"study: `{command} {' '.join(overrides)}` does not compose ({str(err).splitlines()[0]})"
        ) from err
    return str(cfg.output_name)


def _evaluation_key(overrides: list[str]) -> dict[str, str]:
    from mixmerge.evaluation.run import configured_key  # torch and transformers: only when needed

    return configured_key(compose(config_name="evaluate", overrides=overrides))


def logging_overrides(study: DictConfig, overrides: list[str]) -> list[str]:
    """Every run of a study in one W&B group named after it, logged by `study.logger` unless the
    stage's own overrides pick a logger."""
    extra = [f"group={study.name}"]
    logger = study.get("logger")
    if logger and not any(str(s).startswith("logger=") for s in overrides):
        extra.insert(0, f"logger={logger}")
    return extra


def plan_study(study: DictConfig) -> list[Stage]:
    """Every stage with its jobs and expected outputs, in the order the study lists them."""
    stages: list[Stage] = []
    produced: dict[str, list[str]] = {}
    check_plain_name(study.get("name"), "study.name")  # multirun/study/<name>/<stage>
    for name, spec in study.stages.items():
        check_plain_name(name, "study.stages")
        command = spec.command
        if command not in COMMANDS:
            raise MixmergeError(
                f"study.stages.{name}.command={command}: expected one of {', '.join(COMMANDS)}"
            )
        settings = list(study.settings.get(command) or [])
        common = [
            *settings,
            *list(spec.get("overrides") or []),
            *logging_overrides(study, settings),
        ]
        if command == "evaluate":
            models: list[str] = []
            for source in spec.models_from:
                if source not in produced:
                    raise MixmergeError(
                        f"study.stages.{name}.models_from: no earlier stage named '{source}'"
                    )
                models += produced[source]
            models += list(spec.get("models") or [])
            jobs = [[f"model_ref={m}"] for m in models]
            stage = Stage(name, command, jobs, common, outputs=models)
            if models:
                stage.expect = _evaluation_key([*common, *jobs[0]])
        else:
            jobs = _grid(spec.get("sweep"))
            outputs = [output_name(command, [*common, *job]) for job in jobs]
            for out in outputs:  # each becomes <models_dir>/<out>
                check_plain_name(out, f"study.stages.{name}: output_name")
            stage = Stage(name, command, jobs, common, outputs=outputs)
        produced[name] = stage.outputs
        stages.append(stage)
    return stages


def is_complete(stage: Stage, output: str, models_dir: Path) -> bool:
    """Whether a job's output is finished: a trained or merged model's provenance exists; an
    evaluation's results exist and were made from the stage's prompts and decoding (results from
    an older prompt set or decoding are stale: the job runs again)."""
    folder = models_dir / output
    if stage.command != "evaluate":
        return (folder / PROVENANCE_FILE).is_file()
    try:
        recorded = json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    generation = recorded.get("generation") if isinstance(recorded, dict) else None
    return isinstance(generation, dict) and all(
        generation.get(key) == value for key, value in stage.expect.items()
    )
