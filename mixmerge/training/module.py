"""The causal-LM LightningModule shared by every objective: model loading, LoRA, optimizers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from mixmerge.modeling import load_causal_lm
from mixmerge.training.autocast import cast_pre_norm_outputs_once
from mixmerge.training.strategies import init_lora_under_zero3, zero3_model_loading


class CausalLMModule(L.LightningModule):
    """Holds a Hugging Face causal LM (optionally wrapped with LoRA) and builds its optimizer.

    The model is created in `configure_model`, which Lightning calls inside the strategy's context,
    so DeepSpeed ZeRO-3 can shard it as it is built.
    """

    def __init__(
        self,
        model_path: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        lora: Any = None,
        trust_remote_code: bool = False,
        gradient_checkpointing: bool = False,
        freeze_embeddings: bool = False,
    ):
        super().__init__()
        self.model_path = model_path
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.lora = lora
        self.trust_remote_code = trust_remote_code
        self.gradient_checkpointing = gradient_checkpointing
        self.freeze_embeddings = freeze_embeddings
        self.model: Any = None
        self.loss_history: list[float] = []
        # Set by the pipeline (resolved config, base model path, mixture manifest): saved in every
        # checkpoint so `mixmerge.convert` can turn any checkpoint into a model folder on its own.
        self.run_record: dict[str, Any] = {}

    def configure_model(self) -> None:
        if self.model is not None:
            return
        strategy = self._trainer.strategy if self._trainer else None
        with zero3_model_loading(strategy):
            model = load_causal_lm(self.model_path, trust_remote_code=self.trust_remote_code)
        cast_pre_norm_outputs_once(model)
        if self.freeze_embeddings:
            # The input embedding (and a head tied to it) stays as loaded: for a large-vocabulary
            # small model (Gemma 3 270M: 63% of the weights) this drops their gradients, optimizer
            # moments and the head's weight-gradient matmul, and a short fine-tune barely moves
            # rows of tokens it never sees anyway.
            model.get_input_embeddings().weight.requires_grad_(False)
            model.get_output_embeddings().weight.requires_grad_(False)
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if self.lora is not None:
            from peft import get_peft_model

            if self.gradient_checkpointing:
                model.enable_input_require_grads()
            model = get_peft_model(model, self.lora)
            init_lora_under_zero3(model, strategy)
        model.train()  # from_pretrained returns a model in eval mode
        self.model = model

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer=optimizer, num_training_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as configured, also with a fused optimizer under mixed precision.

        Lightning's MixedPrecision refuses to clip for optimizers that unscale fp16 gradients inside
        their own step (fused AdamW), since it would clip scaled gradients. Unscaling first (torch's
        GradScaler then tells the fused step that the gradients are already unscaled) makes it safe;
        with bf16 there is no scaler and nothing to unscale. Other plugins (DeepSpeed) keep their own
        clipping.
        """
        from lightning.pytorch.plugins.precision import MixedPrecision, Precision
        from lightning.pytorch.utilities import GradClipAlgorithmType

        plugin = self.trainer.precision_plugin
        if not isinstance(plugin, MixedPrecision):
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        if not gradient_clip_val:
            return
        if plugin.scaler is not None:
            plugin.scaler.unscale_(optimizer)
        algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
        Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)

    def record_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=batch_size)
        self.loss_history.append(float(loss.detach()))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mixmerge"] = self.run_record

    # The loss history is part of the module's state_dict (PyTorch's extra state), so it travels
    # with the weights: into checkpoints (a resumed run reports the whole run's loss curve) and
    # back from ddp_spawn's worker processes.
    def get_extra_state(self) -> dict[str, Any]:
        return {"loss_history": list(self.loss_history)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.loss_history = list(state.get("loss_history", []))

    def summary_metrics(self) -> dict[str, float]:
        """First and last few losses, so a caller (and the provenance) can see that training moved."""
        h = self.loss_history
        if not h:
            return {}
        k = max(1, min(5, len(h) // 4))
        return {
            "steps": len(h),
            "loss_first": sum(h[:k]) / k,
            "loss_last": sum(h[-k:]) / k,
        }
