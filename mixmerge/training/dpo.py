"""Offline preference training (DPO family): chosen and rejected in one concatenated forward pass."""

from __future__ import annotations

from typing import Any

import torch

from mixmerge.data.datamodule import best_fit_rows, packed_row, pad
from mixmerge.data.formatting import IGNORE_INDEX
from mixmerge.training.logprobs import sequence_count, sequence_logps
from mixmerge.training.losses import check_preference_params, implicit_rewards, preference_loss
from mixmerge.training.module import CausalLMModule


class PreferenceCollator:
    """The chosen sequences, then the rejected ones, as one batch of 2B sequences, so one forward
    pass sees both; sequence i < B is pair i's chosen response, B + i its rejected one.

    With `pack_length` the 2B sequences are packed into rows of at most that many tokens
    (best-fit decreasing, block-diagonal attention; `sequence_index` says which sequence each
    token is), so almost no compute goes to padding; without it each sequence is a padded row.
    Prompt positions carry label -100, so log-probabilities cover response tokens only.
    Precomputed reference log-probs, when present, ride along as `ref_chosen_logps`/`ref_rejected_logps`.
    """

    def __init__(self, pad_token_id: int, pack_length: int | None = None):
        self.pad_token_id = pad_token_id
        self.pack_length = pack_length

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs, labels = [], []
        for side in ("chosen_ids", "rejected_ids"):
            for f in features:
                seqs.append(f["prompt_ids"] + f[side])
                labels.append([IGNORE_INDEX] * len(f["prompt_ids"]) + f[side])
        if self.pack_length:
            rows = [
                packed_row(seqs, labels, items)
                for items in best_fit_rows([len(s) for s in seqs], self.pack_length)
            ]
            index = pad([r["sequence_index"] for r in rows], -1)
            batch = {
                "input_ids": pad([r["input_ids"] for r in rows], self.pad_token_id),
                "labels": pad([r["labels"] for r in rows], IGNORE_INDEX),
                "position_ids": pad([r["position_ids"] for r in rows], 0),
                "sequence_index": index,
                # the real tokens (what a throughput count wants); packed rows run without a mask
                "attention_mask": (index >= 0).long(),
            }
        else:
            batch = {
                "input_ids": pad(seqs, self.pad_token_id),
                "labels": pad(labels, IGNORE_INDEX),
                "attention_mask": pad([[1] * len(s) for s in seqs], 0),
            }
        if "ref_chosen_logps" in features[0]:
            batch["ref_chosen_logps"] = torch.tensor([f["ref_chosen_logps"] for f in features])
            batch["ref_rejected_logps"] = torch.tensor([f["ref_rejected_logps"] for f in features])
        return batch


def concatenated_logps(
    model: Any, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the chosen and the rejected responses from a single forward pass."""
    logps = sequence_logps(model, batch)
    half = logps.shape[0] // 2
    return logps[:half], logps[half:]


class DPOModule(CausalLMModule):
    """DPO and its variants (`loss_type`). The reference is either precomputed (full fine-tuning:
    the reference model is never in memory during training) or, with LoRA, the policy itself with
    its adapters disabled."""

    def __init__(
        self,
        *args: Any,
        beta: float = 0.1,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check_preference_params(beta, loss_type, label_smoothing)
        self.beta = beta
        self.loss_type = loss_type
        self.label_smoothing = label_smoothing

    def reference_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "ref_chosen_logps" in batch:
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        if not hasattr(self.model, "disable_adapter"):
            raise RuntimeError("DPO without precomputed reference log-probs needs a LoRA policy")
        with torch.no_grad(), self.model.disable_adapter():
            return concatenated_logps(self.model, batch)

    def compute_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean preference loss of a batch, with the implicit-reward metrics."""
        chosen, rejected = concatenated_logps(self.model, batch)
        ref_chosen, ref_rejected = self.reference_logps(batch)
        losses = preference_loss(
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
            self.beta,
            self.loss_type,
            self.label_smoothing,
        )
        r_chosen = implicit_rewards(chosen, ref_chosen, self.beta)
        r_rejected = implicit_rewards(rejected, ref_rejected, self.beta)
        return losses.mean(), {
            "train/rewards_chosen": r_chosen.mean(),
            "train/rewards_rejected": r_rejected.mean(),
            "train/reward_accuracy": (r_chosen > r_rejected).float().mean(),
            "train/reward_margin": (r_chosen - r_rejected).mean(),
        }

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, metrics = self.compute_loss(batch)
        n = sequence_count(batch) // 2
        self.record_loss(loss, n)
        self.log_dict(metrics, on_step=True, batch_size=n)
        return loss
