"""TRL's side of the training sections: `SFTTrainer` and `DPOTrainer` with their defaults.

What is set, and why: the model folder and mixmerge's tokenizer (the same tokens for both
frameworks), batch size, `max_length`, steps/epochs and seed (the benchmark's shared settings),
`report_to="none"` and `save_strategy="no"` (no logging or checkpoint I/O, as on mixmerge's side),
and, on a machine without a GPU, `use_cpu=True`: TRL's default `bf16=True` refuses to start on a
CPU-only machine without it (`--trl-precision fp32` sets `bf16=False` instead). Everything else —
gradient checkpointing on, no packing, a reference forward pass every DPO step unless
`precompute_ref_log_probs=True` — is TRL's default.

`--trl-config recommended` applies what TRL's documentation recommends for speed and memory where
it applies on this machine. Its "Reducing memory usage" guide and `SFTConfig` say packing
(`packing_strategy="bfd"`) and padding-free batches need FlashAttention 2/3, which a CPU does not
have, and list gradient checkpointing as a memory-for-compute trade (TRL turns it on by default;
transformers' default is off): a 270M model fits in memory many times over, so it is turned off.
Both trainers then run with `gradient_checkpointing=False`; everything else stays TRL's default.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.synthetic import read_records
from benchmarks.timing import throughput
from benchmarks.train_runs import epoch_figures
from benchmarks.trainer_timer import CountingCollator, TrainerStepTimer
from mixmerge.modeling import load_tokenizer


def precision_args(choice: str) -> dict[str, Any]:
    """TRL's precision: its default (bf16), made runnable on a CPU-only machine, or fp32."""
    if choice == "fp32":
        return {"bf16": False}
    return {} if torch.cuda.is_available() else {"use_cpu": True}


def config_args(choice: str) -> dict[str, Any]:
    """TRL's trainer settings beyond precision: its defaults, or its recommended ones here."""
    return {"gradient_checkpointing": False} if choice == "recommended" else {}


def common_args(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_dir": str(Path(spec["work_dir"]) / "trl"),
        "per_device_train_batch_size": spec["batch_size"],
        "max_length": spec["max_length"],
        "seed": spec["seed"],
        "report_to": "none",
        "save_strategy": "no",
        **precision_args(spec["trl_precision"]),
        **config_args(spec.get("trl_config", "default")),
    }


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def run_sft(spec: dict[str, Any]) -> dict[str, Any]:
    """SFTTrainer on the records as conversational prompt/completion pairs (loss on completions)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [
        {"prompt": _user(r["prompt"]), "completion": _assistant(r["chosen"])}
        for r in read_records(spec["data_file"])
    ]
    args = SFTConfig(max_steps=spec["warmup"] + spec["steps"], **common_args(spec))
    timer = TrainerStepTimer()
    trainer = SFTTrainer(
        model=spec["model_dir"],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(spec["model_dir"]),
        callbacks=[timer],
    )
    trainer.data_collator = CountingCollator(trainer.data_collator, timer.steps)
    trainer.train()
    return {
        **throughput(timer.steps.data, spec["warmup"], spec["threads"]),
        "params": timer.steps.data["params"],
        "precision": "bf16-mixed" if args.bf16 else "32-true",
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "packing": bool(args.packing),
    }


def run_dpo(spec: dict[str, Any]) -> dict[str, Any]:
    """One DPOTrainer epoch; the clock runs from building the trainer (model and reference model
    loading, tokenisation, and the reference pass when precomputed) to the end of the last step."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rows = [
        {
            "prompt": _user(r["prompt"]),
            "chosen": _assistant(r["chosen"]),
            "rejected": _assistant(r["rejected"]),
        }
        for r in read_records(spec["data_file"])
    ]
    precompute = bool(spec.get("precompute_ref_log_probs"))
    args = DPOConfig(num_train_epochs=1, precompute_ref_log_probs=precompute, **common_args(spec))
    timer = TrainerStepTimer()
    dataset = Dataset.from_list(rows)
    tokenizer = load_tokenizer(spec["model_dir"])
    start = (time.perf_counter(), time.process_time())
    trainer = DPOTrainer(
        model=spec["model_dir"],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.data_collator = CountingCollator(trainer.data_collator, timer.steps)
    trainer.train()
    reference = (
        "precomputed before training (precompute_ref_log_probs=True)"
        if precompute
        else "reference model forward every step"
    )
    return {
        **epoch_figures(timer.steps.data, start, spec["threads"]),
        "precision": "bf16-mixed" if args.bf16 else "32-true",
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "reference": reference,
    }
