"""A Lightning callback that times mixmerge's training steps; added to `train()` through the config
(`+callbacks.bench_timer._target_=benchmarks.lightning_timer.StepTimer`), so the run is the real one."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from benchmarks.timing import StepLog


class StepTimer(Callback):
    """Records every step's end time and its batch's tokens; writes them to `out` when training ends."""

    def __init__(self, out: str):
        self.out = out
        self.steps = StepLog()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.steps.mark("train_start")
        self.steps.mark("params", sum(p.numel() for p in pl_module.parameters()))
        self.steps.mark("precision", str(trainer.precision))

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self.steps.batch(batch)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.steps.step_end()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.steps.mark("train_end")
        self.steps.save(self.out)
