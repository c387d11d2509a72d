"""One autocast cast per normalised activation instead of one per projection that reads it.

Under bf16 autocast a pre-norm decoder layer keeps its residual stream in fp32; the RMSNorm in
front of the attention returns fp32, and each of q_proj, k_proj and v_proj casts that same tensor
to bf16 on its own and keeps its own copy for the backward pass (gate_proj and up_proj do the same
after the second norm; Cohere's parallel block reads one norm five times). Casting the norm's
output once, where autocast would cast it anyway, gives the projections the identical bf16 values
and lets them share one saved tensor: fewer copies and about 7% less memory on SmolLM2 (measured:
5.51 → 5.16 GB peak for a 2,048-token step). The forward pass is bit-for-bit the same. In the
backward pass the projections' input gradients are summed in bf16 before the one cast back to
fp32 (rather than cast, then summed): measured on SmolLM2, the gradient differs from plain
autocast's by 0.5% (relative norm), and both are equally far from an fp32 gradient (8.5% vs 8.6%).
"""

from __future__ import annotations

from typing import Any

import torch

# The norms of each architecture whose output feeds only linear projections. Llama-style blocks:
# `input_layernorm` (q/k/v) and `post_attention_layernorm` (gate/up). Gemma 2/3 wrap each block in
# a sandwich: `post_attention_layernorm` normalises the attention's *output* before the residual
# add, so only `input_layernorm` and `pre_feedforward_layernorm` qualify. Post-norm designs
# (OLMo 2) are left out.
_LLAMA_NORMS = ("input_layernorm", "post_attention_layernorm")
_GEMMA_NORMS = ("input_layernorm", "pre_feedforward_layernorm")
PRE_NORMS_BY_MODEL_TYPE: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("llama", "mistral", "qwen2", "qwen3", "phi3", "cohere", "cohere2"), _LLAMA_NORMS
    ),
    **dict.fromkeys(("gemma2", "gemma3_text"), _GEMMA_NORMS),
}
PRE_NORM_MODEL_TYPES = frozenset(PRE_NORMS_BY_MODEL_TYPE)


def _cast_to_autocast_dtype(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor | None:
    device = output.device.type
    if torch.is_autocast_enabled(device) and output.is_floating_point():
        return output.to(torch.get_autocast_dtype(device))
    return None  # outside autocast (fp32, DeepSpeed's bf16 weights): unchanged


def cast_pre_norm_outputs_once(model: Any) -> int:
    """Register the cast on every decoder layer's pre-norms; returns how many norms it applies to
    (0 for architectures not known to be pre-norm, which are left as they are)."""
    config = getattr(model, "config", None)
    pre_norms = PRE_NORMS_BY_MODEL_TYPE.get(getattr(config, "model_type", None))
    if pre_norms is None:
        return 0
    norms = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in pre_norms]
    for norm in norms:
        norm.register_forward_hook(_cast_to_autocast_dtype)
    return len(norms)
