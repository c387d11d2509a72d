"""`python -m mixmerge.convert CHECKPOINT` — a training checkpoint (a Lightning .ckpt file, or a
DeepSpeed ZeRO folder of shards) -> a plain Hugging Face model folder with its provenance, the same
folder a finished run writes. Every checkpoint `mixmerge.train` saves names its run (config, base
model, mixture), so nothing else is needed:

    python -m mixmerge.convert outputs/train/runs/<run>/checkpoints/step=0000200.ckpt --output-name my-model-step200
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from omegaconf import OmegaConf, open_dict

import mixmerge.config  # noqa: F401  (registers the config resolvers)
from mixmerge.errors import MixmergeError, report_errors
from mixmerge.logs import setup_logging
from mixmerge.modeling import is_model_dir, load_tokenizer, resolve_model
from mixmerge.names import output_path
from mixmerge.training.convert import load_module_state, read_checkpoint
from mixmerge.training.export import export_model
from mixmerge.training.pipeline import build_module, train_provenance

log = logging.getLogger(__name__)


def refuse_existing(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not overwrite:
        raise MixmergeError(
            f"{dest} already exists (pass --output-name NAME, or --overwrite to replace it)"
        )


def export_checkpoint(
    checkpoint: str | Path,
    output_name: str | None = None,
    models_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Consolidate `checkpoint` into `<models_dir>/<output_name>` (defaults: the run's own)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise MixmergeError(f"{checkpoint}: no such checkpoint")
    if output_name and models_dir:  # fail before reading gigabytes
        refuse_existing(output_path(models_dir, output_name, "--output-name"), overwrite)
    state = read_checkpoint(checkpoint)
    record = state.get("mixmerge")
    if not record or "config" not in record:
        raise MixmergeError(
            f"{checkpoint}: not a mixmerge.train checkpoint (it does not name its run)"
        )
    cfg = OmegaConf.create(record["config"])
    if output_name:
        with open_dict(cfg):
            cfg.output_name = output_name
    models_dir = Path(models_dir or cfg.paths.models_dir)
    dest = output_path(models_dir, cfg.output_name)
    refuse_existing(dest, overwrite)
    model_path = record["model_path"]
    if not is_model_dir(model_path):  # the base model's cache is gone (another machine): rebuild it
        model_path = resolve_model(cfg.model, models_dir)
    module = load_module_state(build_module(cfg, model_path), state)
    metrics = {**module.summary_metrics(), "global_step": int(state.get("global_step", 0))}
    provenance = train_provenance(
        cfg, model_path, record["mixture"], record.get("reference"), metrics, cfg.paths.output_dir
    )
    export_model(
        module.model,
        load_tokenizer(model_path, cfg.model.trust_remote_code),
        dest,
        provenance={**provenance, "checkpoint": str(checkpoint.resolve())},
        merge_lora=cfg.peft.merge_on_save,
        overwrite=overwrite,
    )
    return dest


@report_errors
def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m mixmerge.convert", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "checkpoint", help="a .ckpt file or a DeepSpeed checkpoint folder written by mixmerge.train"
    )
    parser.add_argument(
        "--output-name", help="the model's folder name (default: the run's output_name)"
    )
    parser.add_argument(
        "--models-dir", help="where to write it (default: the run's paths.models_dir)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing folder of that name"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    setup_logging()
    dest = export_checkpoint(args.checkpoint, args.output_name, args.models_dir, args.overwrite)
    print(f"Model written to {dest}")
    return dest


if __name__ == "__main__":
    main()
