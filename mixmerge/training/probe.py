"""A fixed probe: the training loss on the same examples before and after training.

Per-step losses of a multilingual mixture swing with each batch's languages, so "the first steps
versus the last steps" can hide real learning. The probe measures the loss on the first few
examples of the mixture (unshuffled, no gradient) at the start and at the end of training.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader


class LossProbe(L.Callback):
    def __init__(self, batches: int = 4):
        self.batches = batches
        self.before: float | None = None
        self.after: float | None = None

    def _measure(self, trainer: L.Trainer, module: Any) -> float | None:
        datamodule = trainer.datamodule
        if datamodule is None or self.batches <= 0 or not hasattr(module, "compute_loss"):
            return None
        n = min(len(datamodule.examples), self.batches * datamodule.batch_size)
        subset = [datamodule.examples[i] for i in range(n)]
        loader = DataLoader(
            subset, batch_size=datamodule.batch_size, collate_fn=datamodule.collate_fn
        )
        was_training = module.training
        module.eval()
        losses = []
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for batch in loader:
                batch = trainer.strategy.batch_to_device(batch)
                losses.append(float(module.compute_loss(batch)[0]))
        module.train(was_training)
        return sum(losses) / len(losses) if losses else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.before = self._measure(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.after = self._measure(trainer, pl_module)

    def metrics(self) -> dict[str, float]:
        if self.before is None or self.after is None:
            return {}
        return {"probe_loss_before": self.before, "probe_loss_after": self.after}
