"""The merge run, top to bottom: recipe → checks → mergekit configuration → merged folder + provenance."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mixmerge.artifacts import ModelRef
from mixmerge.config import resolved_config
from mixmerge.config_checks import check_values, merge_rules
from mixmerge.errors import MixmergeError
from mixmerge.instantiators import close_loggers, instantiate_loggers
from mixmerge.io import atomic_dir
from mixmerge.merging.checks import (
    check_compatible,
    check_distinct,
    check_paths,
    check_readable,
)
from mixmerge.merging.mergekit_config import (
    build_mergekit_config,
    check_merge_keys,
    check_recipe_fits,
    config_yaml,
    method_spec,
    uses_base,
)
from mixmerge.merging.recipes import Recipe, find_base, model_ref, resolve_recipe
from mixmerge.model_files import check_model_folder
from mixmerge.names import output_path
from mixmerge.provenance import finished_output, parent_entry, write_provenance

log = logging.getLogger(__name__)

MERGEKIT_CONFIG_FILE = "mergekit_config.yml"
TOKENIZER_SOURCES = ("base", "union")


@dataclass(frozen=True)
class MergePlan:
    """A checked merge: everything known, nothing written yet."""

    method: str
    recipe: Recipe
    base: ModelRef | None  # the common parent (used by task-vector methods; recorded for all)
    mergekit: dict[str, Any]
    out_dir: Path
    seed: int


def plan_merge(cfg: DictConfig) -> MergePlan:
    """Resolve and check everything a merge needs; raises MixmergeError before anything is written."""
    check_values(cfg, merge_rules())
    method = str(cfg.merge.name)
    spec = method_spec(method)
    check_merge_keys(spec, cfg.merge)
    needs_base = uses_base(spec, cfg.merge)
    models_dir = Path(cfg.paths.models_dir)
    out_dir = output_path(models_dir, cfg.output_name)
    finished_output(out_dir, str(cfg.output_name), cfg.overwrite)
    recipe = resolve_recipe(cfg.recipe, cfg.merge, models_dir)
    check_recipe_fits(method, recipe)
    base, why = find_base(cfg.recipe, recipe.inputs, models_dir)
    if needs_base and base is None:
        raise MixmergeError(
            f"merge={method}: needs the base model the parents were fine-tuned from, but recipe.base is "
            f"null and {why}; set recipe.base=<trained model name or path>"
        )
    tokenizer_source = resolve_tokenizer_source(cfg.merge.get("tokenizer_source"), models_dir)
    if tokenizer_source == "base" and method == "linear":
        raise MixmergeError(
            "merge.tokenizer_source=base: merge=linear has no base model; use union or a model"
        )
    merged = [item.model for item in recipe.inputs] + ([base] if needs_base and base else [])
    check_distinct(merged)
    check_paths(merged)
    check_readable(merged)
    if tokenizer_source not in (None, *TOKENIZER_SOURCES):
        check_model_folder(tokenizer_source, key="merge.tokenizer_source", weights=False)
    check_compatible(merged, tokenizer_source)
    mergekit = build_mergekit_config(method, cfg.merge, recipe, base, tokenizer_source)
    seed = cfg.merge.get("seed")
    return MergePlan(
        method, recipe, base, mergekit, out_dir, int(cfg.seed if seed is None else seed)
    )


def resolve_tokenizer_source(value: Any, models_dir: Path) -> str | None:
    """null, `base`, `union`, or a model (name or path) whose tokenizer the merge gets."""
    if value is None or str(value) in TOKENIZER_SOURCES:
        return None if value is None else str(value)
    return str(model_ref(value, "merge.tokenizer_source", models_dir).path)


def mergekit_options(cfg: DictConfig, seed: int) -> Any:
    """mergekit's MergeOptions from `mergekit_options` (unknown keys are an error, not ignored)."""
    from mergekit.options import MergeOptions

    options = OmegaConf.to_container(cfg.get("mergekit_options") or {}, resolve=True)
    unknown = sorted(set(options) - set(MergeOptions.model_fields))
    if unknown:
        raise MixmergeError(
            f"mergekit_options.{unknown[0]}: not a mergekit option (see `mergekit-yaml --help`)"
        )
    return MergeOptions(**{**options, "random_seed": seed})


def merge(cfg: DictConfig) -> dict[str, Any]:
    """Run one merge; returns its summary (so a Hydra sweeper can collect it)."""
    from mergekit.merge import run_merge

    out_dir = output_path(cfg.paths.models_dir, cfg.output_name)  # before anything is written
    existing = finished_output(
        out_dir, str(cfg.output_name), cfg.overwrite, cfg.get("skip_existing", False)
    )
    if existing is not None:
        print(f"Model {out_dir} is already finished; skipping (skip_existing=true)")
        return {"output_dir": str(out_dir), "skipped": True}
    plan = plan_merge(cfg)
    config = validated_mergekit_config(plan)
    options = mergekit_options(cfg, plan.seed)
    header = (
        f"Written by mixmerge (python -m mixmerge.merge) for {cfg.output_name}.\n"
        f"Rerun with mergekit alone: mergekit-yaml {MERGEKIT_CONFIG_FILE} OUT_DIR --random-seed {plan.seed}"
    )
    yaml_text = config_yaml(config, header)
    resolved = resolved_config(cfg)
    log.info(
        "Merging %d models with %s into %s", len(plan.recipe.inputs), plan.method, plan.out_dir
    )
    start = time.perf_counter()
    with atomic_dir(plan.out_dir, overwrite=bool(cfg.overwrite)) as tmp:
        run_merge(config, str(tmp), options=options, config_source=yaml_text)
        (tmp / MERGEKIT_CONFIG_FILE).write_text(yaml_text, encoding="utf-8")
        seconds = time.perf_counter() - start
        write_provenance(tmp, "merge", **merge_provenance(cfg, plan, resolved, seconds))
    summary = {"merge_seconds": seconds, "models": len(plan.recipe.inputs)}
    log_to_loggers(cfg, resolved, summary)
    print(f"Merged model written to {plan.out_dir}")
    if cfg.get("evaluate_after"):
        summary["evaluation"] = evaluate_merged(plan.out_dir, cfg)
    return {**summary, "output_dir": str(plan.out_dir)}


def validated_mergekit_config(plan: MergePlan) -> Any:
    """mergekit's own MergeConfiguration of the plan; its refusal is one line."""
    from mergekit.config import MergeConfiguration

    try:
        return MergeConfiguration.model_validate(plan.mergekit)
    except Exception as err:  # pydantic's ValidationError or mergekit's own RuntimeError
        raise MixmergeError(
            f"merge={plan.method}: mergekit rejects the configuration ({str(err).splitlines()[0]})"
        ) from err


def merge_provenance(
    cfg: DictConfig, plan: MergePlan, resolved: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """The fields of a merged model's `mixmerge.json` (mixmerge.artifacts.Provenance)."""
    return {
        "name": str(cfg.output_name),
        "method": plan.method,
        "recipe": {
            "name": plan.recipe.name,
            "models": [
                {
                    "key": i.model.key,
                    "reference": i.model.reference,
                    "path": str(i.model.path),
                    "weight": i.weight,
                }
                for i in plan.recipe.inputs
            ],
        },
        "safety_weight": plan.recipe.safety_weight,
        "parameters": {**OmegaConf.to_container(cfg.merge, resolve=True), "seed": plan.seed},
        "parents": [parent_entry(i.model.reference, i.model.path) for i in plan.recipe.inputs],
        "base": parent_entry(plan.base.reference, plan.base.path) if plan.base else None,
        "mergekit_version": importlib.metadata.version("mergekit"),
        "mergekit_config": plan.mergekit,
        "evaluate_after": bool(cfg.get("evaluate_after")),
        "merge_seconds": round(seconds, 3),
        "config": resolved,
        "run_dir": str(cfg.paths.output_dir),
    }


def evaluate_merged(model_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a merged model right after it is written: conf/evaluate.yaml with this run's paths
    (results in <run dir>/evaluation and beside the model) and `evaluate_overrides`."""
    from mixmerge.config import compose_entry
    from mixmerge.evaluation.run import evaluate

    paths = [f"paths.{key}={cfg.paths[key]}" for key in ("models_dir", "cache_dir")]
    paths.append(f"paths.output_dir={Path(cfg.paths.output_dir) / 'evaluation'}")
    overrides = [f"model_ref={model_dir}", *paths, *list(cfg.get("evaluate_overrides") or [])]
    return evaluate(compose_entry("evaluate", overrides))


def log_to_loggers(cfg: DictConfig, resolved: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Log the config and the merge's figures to the configured loggers (none by default)."""
    loggers = instantiate_loggers(cfg)
    for logger in loggers:
        logger.log_hyperparams({"config": resolved})
        logger.log_metrics({f"merge/{k}": float(v) for k, v in metrics.items()})
    close_loggers(loggers)  # one W&B run per merge, also in a multirun
