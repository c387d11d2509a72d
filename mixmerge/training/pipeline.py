"""The training run, top to bottom: mixture → model → Lightning fit → Hugging Face folder + provenance."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from mixmerge.artifacts import MIXTURE_FILE, MixtureManifest, validate, write_artifact
from mixmerge.config import describe_precision, resolved_config
from mixmerge.config_checks import check_values, train_rules
from mixmerge.data.datamodule import SFTCollator, encode_records, pack
from mixmerge.data.mixture import Mixture, build_mixture
from mixmerge.errors import MixmergeError
from mixmerge.instantiators import instantiate_loggers, instantiate_nodes
from mixmerge.model_files import check_model_folder
from mixmerge.modeling import check_causal_lm, load_tokenizer, resolve_model, resolve_model_ref
from mixmerge.names import output_path
from mixmerge.provenance import finished_output, parent_entry
from mixmerge.training.checkpointing import (
    checkpoint_dir,
    preempted,
    resolve_resume,
    save_final_checkpoint,
)
from mixmerge.training.convert import load_module_state, read_checkpoint
from mixmerge.training.dpo import PreferenceCollator
from mixmerge.training.export import export_model
from mixmerge.training.losses import check_preference_params
from mixmerge.training.probe import LossProbe
from mixmerge.training.reference import reference_logps
from mixmerge.training.resumable import ResumableDataModule
from mixmerge.training.strategies import (
    check_multirun_launch,
    close_process_group,
    is_deepspeed,
    optimizer_for_strategy,
)

log = logging.getLogger(__name__)

OBJECTIVES = ("sft", "dpo")


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[Any]:
    """The configured callbacks; a learning-rate monitor needs a logger, so it is dropped with logger=none."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    return [
        c
        for c in instantiate_nodes(cfg.get("callbacks"))
        if has_logger or not isinstance(c, LearningRateMonitor)
    ]


def build_strategy(cfg: DictConfig) -> Any:
    """The `strategy` group: a `_target_` node (its `name` is a label, not an argument), or a name
    Lightning knows (`auto`)."""
    if cfg.strategy.get("_target_"):
        node = OmegaConf.to_container(cfg.strategy, resolve=True)
        node.pop("name")
        return instantiate(node)
    return cfg.strategy.name


def build_module(cfg: DictConfig, model_path: str, strategy: Any = None) -> L.LightningModule:
    lora = instantiate(cfg.peft.config) if cfg.peft.get("config") else None
    # Objects (LoraConfig, partial optimizers) are passed to the partial, not through Hydra, which
    # would try to turn them into configs.
    module_factory = instantiate(cfg.objective.module, _partial_=True)
    return module_factory(
        model_path=model_path,
        optimizer=optimizer_for_strategy(instantiate(cfg.objective.optimizer), strategy),
        scheduler=instantiate(cfg.objective.scheduler) if cfg.objective.get("scheduler") else None,
        lora=lora,
        trust_remote_code=cfg.model.trust_remote_code,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        freeze_embeddings=bool(cfg.model.get("freeze_embeddings", False)),
    )


def attach_reference(
    cfg: DictConfig, examples: Any, model_path: str, pad_token_id: int, policy: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Add precomputed reference log-probs to every pair, or note that LoRA's disabled adapters serve.

    `policy`: the model about to be trained, still holding `model_path`'s weights (None when it is
    not built yet, as under ZeRO-3); it scores the pairs when it is also the reference.
    """
    if cfg.peft.get("config"):
        return examples, {"kind": "policy_with_adapters_disabled", "model": model_path}
    ref_path = model_path
    if cfg.objective.get("reference"):
        ref_path = str(
            resolve_model_ref(
                str(cfg.objective.reference), cfg.paths.models_dir, key="objective.reference"
            )
        )
    chosen, rejected, info = reference_logps(
        ref_path,
        examples,
        pad_token_id,
        cache_dir=Path(cfg.paths.cache_dir) / "reference_logps",
        max_length=cfg.data.max_length,
        precision=str(cfg.trainer.precision),
        # no activations are kept for a backward pass: twice the training batch fits
        batch_size=2 * cfg.data.batch_size,
        trust_remote_code=cfg.model.trust_remote_code,
        loaded=policy if ref_path == model_path else None,
        pack_length=cfg.data.max_length if cfg.data.packing else None,
    )
    examples = examples.add_column("ref_chosen_logps", chosen.tolist()).add_column(
        "ref_rejected_logps", rejected.tolist()
    )
    return examples, {"kind": "precomputed", **info}


def release_training_state(trainer: L.Trainer, module: L.LightningModule) -> None:
    """Free the optimizer's moments and the gradients (for AdamW, 3x the weights' memory) once
    training is over, so exporting the model reuses that memory instead of adding to the peak."""
    for optimizer in trainer.optimizers:
        state = getattr(optimizer, "state", None)  # (DeepSpeed's wrappers expose the inner one)
        if isinstance(state, dict):
            state.clear()
    module.zero_grad(set_to_none=True)


def check_config(cfg: DictConfig) -> None:
    """Checks Hydra cannot do itself, before anything expensive happens."""
    check_values(cfg, train_rules())
    if cfg.objective.name not in OBJECTIVES:
        raise MixmergeError(
            f"objective={cfg.objective.name}: expected one of {', '.join(OBJECTIVES)}"
        )
    if not isinstance(cfg.data.max_length, int) or cfg.data.max_length < 8:
        raise MixmergeError(f"data.max_length={cfg.data.max_length}: expected an integer >= 8")
    if not isinstance(cfg.data.batch_size, int) or cfg.data.batch_size < 1:
        raise MixmergeError(f"data.batch_size={cfg.data.batch_size}: expected a positive integer")
    if cfg.objective.name == "dpo":
        check_preference_params(
            cfg.objective.beta, cfg.objective.loss_type, cfg.objective.label_smoothing
        )
    if cfg.get("ckpt_path") not in (None, "last"):  # an explicit checkpoint is read up front
        resolve_resume(cfg.ckpt_path, Path(cfg.paths.output_dir) / "checkpoints")
    if cfg.model.get("init_from") is not None:  # '' is an empty name, not "no init_from"
        start = resolve_model_ref(
            str(cfg.model.init_from), cfg.paths.models_dir, key="model.init_from"
        )
        check_model_folder(start, key="model.init_from")
        check_causal_lm(start, key="model.init_from")


def train_provenance(
    cfg: DictConfig,
    model_path: str,
    manifest: dict[str, Any],
    reference: Any,
    metrics: dict[str, Any],
    run_dir: str | Path,
) -> dict[str, Any]:
    """The provenance of a trained model (also written by `mixmerge.convert` for a checkpoint)."""
    return {
        "kind": "train",
        "objective": cfg.objective.name,
        "name": cfg.output_name,
        "parent": parent_entry(cfg.model.init_from or cfg.model.name, model_path),
        "base_model": cfg.model.name,
        "mixture": manifest,
        "reference": reference,
        "metrics": metrics,
        "config": resolved_config(cfg),
        "run_dir": str(run_dir),
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns its metrics (so a Hydra sweeper can optimise them)."""
    out_dir = output_path(cfg.paths.models_dir, cfg.output_name)  # before anything is written
    check_config(cfg)
    existing = finished_output(
        out_dir, cfg.output_name, cfg.overwrite, cfg.get("skip_existing", False)
    )
    if existing is not None:
        print(f"Model {out_dir} is already finished; skipping (skip_existing=true)")
        return existing.get("metrics", {})
    L.seed_everything(cfg.seed, workers=True)
    data = prepare_data(cfg)
    strategy = build_strategy(cfg)
    module = build_module(cfg, data.model_path, strategy)
    if not is_deepspeed(strategy):
        # Built here, not first inside fit, so that ddp_spawn's workers start from this module and
        # send their trained weights back into it. (ZeRO-3 must build it inside its sharding context.)
        module.configure_model()
    collator = prepare_examples(cfg, data, module)
    write_manifest(cfg, data)
    module.run_record = {
        "config": resolved_config(cfg),
        "model_path": data.model_path,
        "mixture": data.manifest,
        "reference": data.reference,
    }
    trainer, probe = build_trainer(cfg, strategy, data.manifest)
    ckpt_dir = fit(cfg, trainer, module, build_datamodule(cfg, data, collator))
    module = final_module(cfg, trainer, module, ckpt_dir, data.model_path)
    metrics = {
        **module.summary_metrics(),
        **probe.metrics(),
        **{k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if trainer.is_global_zero:
        provenance = train_provenance(
            cfg, data.model_path, data.manifest, data.reference, metrics, Path(cfg.paths.output_dir)
        )
        export_model(
            module.model,
            data.tokenizer,
            out_dir,
            provenance=provenance,
            merge_lora=cfg.peft.merge_on_save,
            overwrite=cfg.overwrite,
        )
        print_summary(out_dir, Path(cfg.paths.output_dir) / MIXTURE_FILE, metrics, probe)
    return metrics


@dataclass
class TrainingData:
    """The mixture, encoded for the model, and what the run records about it."""

    model_path: str
    tokenizer: Any
    mixture: Mixture
    examples: (
        Any  # a datasets.Dataset of token ids (packed rows, or pairs with reference log-probs)
    )
    dropped: int  # examples longer than data.max_length
    manifest: dict[str, Any] = field(default_factory=dict)
    reference: Any = None  # how DPO's reference log-probs were obtained


def prepare_data(cfg: DictConfig) -> TrainingData:
    """Build the mixture and tokenize it with the model's tokenizer."""
    mixture = build_mixture(cfg.data, cfg.languages.codes, cfg.objective.name, cfg.seed)
    model_path = resolve_model(cfg.model, Path(cfg.paths.models_dir))
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    examples, dropped = encode_records(
        mixture.records, tokenizer, cfg.objective.name, cfg.data.max_length
    )
    if len(examples) == 0:
        raise MixmergeError(
            f"data.max_length={cfg.data.max_length}: every prompt is longer than this"
        )
    return TrainingData(model_path, tokenizer, mixture, examples, dropped)


def prepare_examples(cfg: DictConfig, data: TrainingData, module: L.LightningModule) -> Any:
    """Pack SFT examples, or attach DPO's reference log-probs; returns the batch collator.

    Packing: SFT examples are packed into rows once; DPO packs each batch's chosen and rejected
    sequences into rows as it collates them (each pair stays in one batch).
    """
    pad = data.tokenizer.pad_token_id
    packing = bool(cfg.data.packing)
    if cfg.objective.name == "dpo":
        data.examples, data.reference = attach_reference(
            cfg, data.examples, data.model_path, pad, policy=module.model
        )
        return PreferenceCollator(pad, cfg.data.max_length if packing else None)
    if packing:
        data.examples = pack(data.examples, cfg.data.max_length)
    return SFTCollator(pad)


def write_manifest(cfg: DictConfig, data: TrainingData) -> Path:
    """The mixture manifest (mixmerge.artifacts.MixtureManifest) in the run directory."""
    data.manifest = {
        **data.mixture.manifest,
        "dropped_too_long": data.dropped,
        "training_rows": len(data.examples),
        "packing": bool(cfg.data.packing),
    }
    path = Path(cfg.paths.output_dir) / MIXTURE_FILE
    written = write_artifact(path, validate(MixtureManifest, data.manifest, path))
    log.info(
        "Mixture: %d examples, realised safety fraction %.4f",
        data.manifest["total"],
        data.manifest["realised_safety_fraction"],
    )
    return written


def build_datamodule(cfg: DictConfig, data: TrainingData, collator: Any) -> ResumableDataModule:
    return ResumableDataModule(
        data.examples,
        collator,
        cfg.data.batch_size,
        cfg.seed,
        cfg.data.num_workers,
        group_by_length=not cfg.data.packing and bool(cfg.data.group_by_length),
    )


def build_trainer(
    cfg: DictConfig, strategy: Any, manifest: dict[str, Any]
) -> tuple[L.Trainer, LossProbe]:
    """The Trainer with the configured loggers and callbacks, and the loss probe it runs."""
    loggers = instantiate_loggers(cfg)
    probe = LossProbe(batches=int(cfg.get("probe_batches", 4)))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[*build_callbacks(cfg, bool(loggers)), probe],
        strategy=strategy,
    )
    check_multirun_launch(trainer, cfg.strategy.name)
    log.info("Precision: %s", describe_precision(str(cfg.trainer.precision)))
    for logger in loggers:
        logger.log_hyperparams({"config": resolved_config(cfg), "mixture": manifest})
    return trainer, probe


def fit(cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, datamodule: Any) -> Path:
    """Fit (resuming when asked); a SIGTERM leaves a resumable checkpoint. Returns the
    checkpoint folder."""
    run_dir = Path(cfg.paths.output_dir)
    ckpt_dir = checkpoint_dir(trainer, run_dir)
    resume_from = resolve_resume(cfg.ckpt_path, ckpt_dir, cfg.output_name)
    if resume_from is not None:
        log.info("Resuming from %s", resume_from)
    try:
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None
        )
    except SIGTERMException:
        close_process_group()
        raise preempted(trainer, run_dir) from None
    return ckpt_dir


def final_module(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: L.LightningModule,
    ckpt_dir: Path,
    model_path: str,
) -> L.LightningModule:
    """The trained module, whole, on rank 0.

    Under ZeRO the weights are sharded (and the fp32 masters live in the optimizer): the final
    model is consolidated from a checkpoint on rank 0, as `mixmerge.convert` does.
    """
    final = save_final_checkpoint(trainer, ckpt_dir) if is_deepspeed(trainer.strategy) else None
    close_process_group()  # the last collective is done: rank 0 exports alone
    release_training_state(trainer, module)
    if final is not None and trainer.is_global_zero:
        return load_module_state(build_module(cfg, model_path), read_checkpoint(final))
    return module


def print_summary(
    out_dir: Path, manifest_path: Path, metrics: dict[str, Any], probe: LossProbe
) -> None:
    print(f"Model written to {out_dir}")
    print(f"Mixture manifest written to {manifest_path}")
    if "loss_first" in metrics:
        print(
            f"Training loss: {metrics['loss_first']:.4f} (first steps) -> {metrics['loss_last']:.4f} (last steps)"
        )
    if "probe_loss_before" in metrics:
        print(
            f"Loss on {probe.batches} fixed training batches: {metrics['probe_loss_before']:.4f} before -> "
            f"{metrics['probe_loss_after']:.4f} after training"
        )
