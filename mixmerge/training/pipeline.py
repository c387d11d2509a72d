"""The training run, top to bottom: mixture → model → Lightning fit → Hugging Face folder + provenance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from mixmerge.config import resolved_config
from mixmerge.data.datamodule import MixtureDataModule, SFTCollator, encode_records, pack
from mixmerge.data.mixture import build_mixture
from mixmerge.errors import MixmergeError
from mixmerge.io import write_json_atomic
from mixmerge.modeling import check_causal_lm, load_tokenizer, resolve_model, resolve_model_ref
from mixmerge.provenance import parent_entry
from mixmerge.training.dpo import PreferenceCollator
from mixmerge.training.export import export_model
from mixmerge.training.losses import check_preference_params
from mixmerge.training.reference import reference_logps

log = logging.getLogger(__name__)

OBJECTIVES = ("sft", "dpo")


def instantiate_dict(nodes: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a dict-shaped group (callbacks, loggers)."""
    return [instantiate(node) for node in (nodes or {}).values() if isinstance(node, DictConfig) and "_target_" in node]


def build_strategy(cfg: DictConfig) -> Any:
    if cfg.strategy.get("_target_"):
        return instantiate(cfg.strategy)
    return cfg.strategy.name


def build_module(cfg: DictConfig, model_path: str) -> L.LightningModule:
    lora = instantiate(cfg.peft.config) if cfg.peft.get("config") else None
    # Objects (LoraConfig, partial optimizers) are passed to the partial, not through Hydra, which
    # would try to turn them into configs.
    module_factory = instantiate(cfg.objective.module, _partial_=True)
    return module_factory(
        model_path=model_path,
        optimizer=instantiate(cfg.objective.optimizer),
        scheduler=instantiate(cfg.objective.scheduler) if cfg.objective.get("scheduler") else None,
        lora=lora,
        trust_remote_code=cfg.model.trust_remote_code,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
    )


def attach_reference(cfg: DictConfig, examples: Any, model_path: str, pad_token_id: int) -> tuple[Any, dict[str, Any]]:
    """Add precomputed reference log-probs to every pair, or note that LoRA's disabled adapters serve."""
    if cfg.peft.get("config"):
        return examples, {"kind": "policy_with_adapters_disabled", "model": model_path}
    ref_path = model_path
    if cfg.objective.get("reference"):
        ref_path = str(resolve_model_ref(str(cfg.objective.reference), cfg.paths.models_dir, key="objective.reference"))
    chosen, rejected, info = reference_logps(
        ref_path,
        examples,
        pad_token_id,
        cache_dir=Path(cfg.paths.cache_dir) / "reference_logps",
        max_length=cfg.data.max_length,
        precision=str(cfg.trainer.precision),
        batch_size=cfg.data.batch_size,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    examples = examples.add_column("ref_chosen_logps", chosen.tolist()).add_column("ref_rejected_logps", rejected.tolist())
    return examples, {"kind": "precomputed", **info}


def check_config(cfg: DictConfig) -> None:
    """Checks Hydra cannot do itself, before anything expensive happens."""
    if cfg.objective.name not in OBJECTIVES:
        raise MixmergeError(f"objective={cfg.objective.name}: expected one of {', '.join(OBJECTIVES)}")
    if not isinstance(cfg.data.max_length, int) or cfg.data.max_length < 8:
        raise MixmergeError(f"data.max_length={cfg.data.max_length}: expected an integer >= 8")
    if not isinstance(cfg.data.batch_size, int) or cfg.data.batch_size < 1:
        raise MixmergeError(f"data.batch_size={cfg.data.batch_size}: expected a positive integer")
    if cfg.objective.name == "dpo":
        check_preference_params(cfg.objective.beta, cfg.objective.loss_type, cfg.objective.label_smoothing)
        if cfg.data.packing:
            raise MixmergeError("data.packing=true: packing applies to SFT only (DPO keeps each pair whole)")
    if cfg.model.get("init_from"):
        start = resolve_model_ref(str(cfg.model.init_from), cfg.paths.models_dir, key="model.init_from")
        check_causal_lm(start, key="model.init_from")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns its metrics (so a Hydra sweeper can optimise them)."""
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    models_dir = Path(cfg.paths.models_dir)
    out_dir = models_dir / cfg.output_name
    if out_dir.exists() and not cfg.overwrite:
        raise MixmergeError(
            f"output_name={cfg.output_name}: {out_dir} already holds a finished model "
            "(pass overwrite=true to replace it, or choose another output_name)"
        )
    objective = cfg.objective.name
    L.seed_everything(cfg.seed, workers=True)

    mixture = build_mixture(cfg.data, cfg.languages.codes, objective, cfg.seed)
    model_path = resolve_model(cfg.model, models_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    examples, dropped = encode_records(mixture.records, tokenizer, objective, cfg.data.max_length)
    if len(examples) == 0:
        raise MixmergeError(f"data.max_length={cfg.data.max_length}: every prompt is longer than this")
    reference = None
    if objective == "dpo":
        examples, reference = attach_reference(cfg, examples, model_path, tokenizer.pad_token_id)
        collator: Any = PreferenceCollator(tokenizer.pad_token_id)
    else:
        if cfg.data.packing:
            examples = pack(examples, cfg.data.max_length)
        collator = SFTCollator(tokenizer.pad_token_id)
    manifest = {**mixture.manifest, "dropped_too_long": dropped, "training_rows": len(examples), "packing": cfg.data.packing}
    manifest_path = write_json_atomic(run_dir / "mixture.json", manifest)
    log.info("Mixture: %d examples, realised safety fraction %.4f", mixture.manifest["total"], manifest["realised_safety_fraction"])

    datamodule = MixtureDataModule(examples, collator, cfg.data.batch_size, cfg.seed, cfg.data.num_workers)
    module = build_module(cfg, model_path)
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=instantiate_dict(cfg.get("callbacks")), strategy=build_strategy(cfg)
    )
    resolved = resolved_config(cfg)
    for logger in loggers:
        logger.log_hyperparams({"config": resolved, "mixture": manifest})
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

    metrics = {**module.summary_metrics(), **{k: float(v) for k, v in trainer.callback_metrics.items()}}
    if trainer.is_global_zero:
        export_model(
            module.model,
            tokenizer,
            out_dir,
            provenance={
                "kind": "train",
                "objective": objective,
                "name": cfg.output_name,
                "parent": parent_entry(cfg.model.init_from or cfg.model.name, model_path),
                "base_model": cfg.model.name,
                "mixture": manifest,
                "reference": reference,
                "metrics": metrics,
                "config": resolved,
                "run_dir": str(run_dir),
            },
            merge_lora=cfg.peft.merge_on_save,
            overwrite=cfg.overwrite,
        )
        print(f"Model written to {out_dir}")
        print(f"Mixture manifest written to {manifest_path}")
        if "loss_first" in metrics:
            print(f"Training loss: {metrics['loss_first']:.4f} (first steps) -> {metrics['loss_last']:.4f} (last steps)")
    return metrics
