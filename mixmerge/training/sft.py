"""Supervised fine-tuning: next-token loss on response tokens only (prompt labels are -100)."""

from __future__ import annotations

import torch

from mixmerge.training.module import CausalLMModule


class SFTModule(CausalLMModule):
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(**batch)
        self.record_loss(out.loss, batch["input_ids"].shape[0])
        return out.loss
