"""Log-probabilities of the labelled tokens without materialising the full-vocabulary logits.

A causal LM's output head turns every position into `vocab_size` logits. Hugging Face's loss (and
a plain `log_softmax`) keeps them — in fp32 — for the backward pass: [tokens, vocab] floats, the
largest activation of a small model (SmolLM2: 49,152 logits per token) and of a large-vocabulary
one (Aya: 256,000). Here the head runs only on the positions that have a label (the response, not
the prompt or padding), in chunks of tokens, and its backward recomputes each chunk's logits from
the hidden states: memory grows with `hidden_size`, not `vocab_size`, and prompt positions cost
no head compute at all. Where a batch's labelled softmax fits `KEEP_SOFTMAX_BYTES` (a CPU's small
batches) the forward keeps it instead, and the backward skips the recompute (the same values, so
the same gradients). The idea is that of fused linear cross-entropy kernels (Liger, Cut
Cross-Entropy), written with plain matmuls so it runs on CPUs and GPUs alike.

Models whose head does more than `lm_head(h) * scale` (logit soft-capping), a head wrapped by LoRA
or a head sharded by DeepSpeed ZeRO-3 fall back to the model's own logits, so results never
depend on which path ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mixmerge.data.formatting import IGNORE_INDEX

# Architectures whose causal-LM head is `lm_head(h)` (times `logit_scale` for Cohere/Aya). Gemma 3
# belongs here: its 262K-token head dominates a 270M model's memory (a 4×256 batch's full logits
# are ~1 GB in fp32); Gemma 2's soft-capped logits fall back through `final_logit_softcapping`.
FUSED_HEAD_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "cohere",
        "cohere2",
        "phi3",
        "olmo",
        "olmo2",
        "gemma",
        "gemma2",
        "gemma3_text",
    }
)
# Logits per chunk (tokens × vocabulary): about 128 MB of fp32 at a time.
CHUNK_LOGITS = 1 << 25
# The backward needs each labelled token's softmax. Where all of them fit in this many bytes of
# fp32 (1,536 tokens of Gemma 3's 262,144-token vocabulary; the quick start's steps have fewer) the
# forward keeps them, and the backward skips recomputing the head product: one of its three
# vocabulary-sized matmuls, a fifth of an fp32 training step on a CPU (docs/performance.md). Larger
# batches (a GPU's) recompute, so memory still grows with the hidden size there.
KEEP_SOFTMAX_BYTES = 3 << 29


class _LinearTokenLogProbs(torch.autograd.Function):
    """log softmax(scale · h Wᵀ)[target] per row, chunked over rows; the backward recomputes."""

    @staticmethod
    def forward(ctx: Any, hidden, weight, targets, scale: float, chunk: int, keep: bool):  # type: ignore[override]
        n = hidden.shape[0]
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        kept = []
        for s in range(0, n, chunk):
            logits = (hidden[s : s + chunk] @ weight.t()).float()
            if scale != 1.0:
                logits.mul_(scale)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, targets[s : s + chunk, None]).squeeze(1)
            logps[s : s + chunk] = picked - lse[s : s + chunk]
            if keep:  # the softmax, by the very operations the backward would recompute it with
                kept.append(logits.sub_(lse[s : s + chunk, None]).exp_())
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.scale, ctx.chunk, ctx.kept = scale, chunk, kept
        return logps

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_h else None
        # Accumulated over chunks in fp32 (one rounding to the weight's dtype at the end).
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        )
        grad = grad.float()
        for i, s in enumerate(range(0, hidden.shape[0], chunk)):
            h = hidden[s : s + chunk]
            g = grad[s : s + chunk]
            # d logp / d logits = onehot(target) − softmax; chained with the upstream grad and the scale.
            if ctx.kept:
                probs = ctx.kept[i].mul(-g[:, None])  # kept intact for another backward
            else:
                probs = (h @ weight.t()).float()
                if scale != 1.0:
                    probs.mul_(scale)
                probs.sub_(lse[s : s + chunk, None]).exp_().mul_(-g[:, None])
            probs.scatter_add_(1, targets[s : s + chunk, None], g[:, None])
            if scale != 1.0:
                probs.mul_(scale)
            d = probs.to(hidden.dtype)
            if want_h:
                grad_hidden[s : s + chunk] = d @ weight
            if want_w:
                grad_weight.add_((d.t() @ h).float())
        if want_w:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


@dataclass(frozen=True)
class FusedHead:
    """What the fused path needs from a causal LM: the trunk, the head's weight and its scale."""

    decoder: Any
    weight: torch.Tensor
    scale: float


def fused_head(model: Any) -> FusedHead | None:
    """The model's trunk and plain linear head, or None when the fused path does not apply."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in FUSED_HEAD_MODEL_TYPES:
        return None
    if getattr(config, "final_logit_softcapping", None):
        return None
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None  # e.g. a LoRA-wrapped head
    if hasattr(head.weight, "ds_id"):
        return None  # sharded by ZeRO-3: only the module's own forward gathers it
    # Cohere (Aya) multiplies its logits by `logit_scale`; PEFT wrappers forward the attribute.
    return FusedHead(model.get_decoder(), head.weight, float(getattr(model, "logit_scale", 1.0)))


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    device = tensor.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return tensor.dtype


def sequence_count(batch: dict[str, torch.Tensor]) -> int:
    """How many sequences a batch holds: its rows, or the sequences packed into them."""
    if "sequence_index" in batch:
        return int(batch["sequence_index"].max()) + 1
    return int(batch["input_ids"].shape[0])


def labelled_token_logps(
    model: Any,
    batch: dict[str, torch.Tensor],
    chunk_logits: int = CHUNK_LOGITS,
    keep_softmax_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of every labelled token (label ≠ -100) and the sequence each belongs to (its row,
    or, in packed rows, its `sequence_index`).

    `labels` are aligned with `input_ids` (Hugging Face's convention): position t predicts token t+1.
    Rows packed from several sequences carry `position_ids` restarting at each sequence and are run
    without `attention_mask`, so attention stays within each sequence (transformers' packed-sequence
    mask).
    """
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    if "position_ids" in inputs:
        inputs.pop("attention_mask", None)  # the packed mask comes from position_ids alone
    # No KV cache: it is never reused here, and transformers derives the packed mask only without one.
    inputs["use_cache"] = False
    labels = batch["labels"][:, 1:]
    select = labels != IGNORE_INDEX
    if "sequence_index" in batch:
        owner = batch["sequence_index"][:, 1:][select]
    else:
        owner = select.nonzero()[:, 0]
    targets = labels[select]
    head = fused_head(model)
    if head is None:
        logits = model(**inputs).logits[:, :-1][select]
        return -F.cross_entropy(logits.float(), targets, reduction="none"), owner
    hidden = head.decoder(**inputs).last_hidden_state[:, :-1][select]
    dtype = _compute_dtype(hidden)
    weight = head.weight.to(dtype)
    chunk = max(16, chunk_logits // weight.shape[0])
    # Keep the softmax for the backward when there will be one and it fits the budget.
    keep = (
        torch.is_grad_enabled()
        and (hidden.requires_grad or weight.requires_grad)
        and hidden.shape[0] * weight.shape[0] * 4
        <= (KEEP_SOFTMAX_BYTES if keep_softmax_bytes is None else keep_softmax_bytes)
    )
    with torch.autocast(hidden.device.type, enabled=False):
        logps = _LinearTokenLogProbs.apply(
            hidden.to(dtype), weight, targets, head.scale, chunk, keep
        )
    return logps, owner


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the labelled tokens' log-probs of each sequence: [sequences] (fp32)."""
    logps, owner = labelled_token_logps(model, batch)
    out = torch.zeros(sequence_count(batch), dtype=torch.float32, device=logps.device)
    return out.index_add(0, owner, logps)


def mean_token_nll(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The SFT loss: mean negative log-likelihood over the labelled tokens of the batch."""
    logps, _ = labelled_token_logps(model, batch)
    return -logps.mean()
