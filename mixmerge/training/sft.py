"""Supervised fine-tuning: next-token loss on response tokens only (prompt labels are -100)."""

from __future__ import annotations

import torch

from mixmerge.training.logprobs import mean_token_nll
from mixmerge.training.module import CausalLMModule


class SFTModule(CausalLMModule):
    def compute_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean token loss of a batch (and no extra metrics), as Hugging Face's LM loss defines
        it, computed without the full-vocabulary logits (mixmerge.training.logprobs)."""
        return mean_token_nll(self.model, batch), {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.compute_loss(batch)
        self.record_loss(loss, batch["input_ids"].shape[0])
        return loss
