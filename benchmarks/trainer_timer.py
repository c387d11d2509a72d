"""Timing a Hugging Face `Trainer` (TRL's trainers): a callback for step ends and a collator wrapper
that counts each batch's tokens (the Trainer's callbacks never see the batch)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from benchmarks.timing import StepLog


class TrainerStepTimer(TrainerCallback):
    """Records step ends and the training's start and end; `steps` is shared with CountingCollator."""

    def __init__(self) -> None:
        self.steps = StepLog()

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        self.steps.mark("train_start")
        if model is not None:
            self.steps.mark("params", sum(p.numel() for p in model.parameters()))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.step_end()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.mark("train_end")


class CountingCollator:
    """Wraps a collator; batch i it builds is the batch of step i (no gradient accumulation)."""

    def __init__(self, collator: Any, log: StepLog):
        self.collator = collator
        self.steps = log

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        self.steps.batch(batch)
        return batch
