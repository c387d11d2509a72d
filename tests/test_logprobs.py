"""The fused log-prob head: the same values and gradients as the model's own logits, less memory."""

from __future__ import annotations

import pytest
import torch
from transformers import CohereConfig, CohereForCausalLM, LlamaConfig, LlamaForCausalLM

from mixmerge.training.logprobs import fused_head, labelled_token_logps, sequence_logps

SIZES = {
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "cohere":  # Aya's architecture: logits are scaled by logit_scale
        return CohereForCausalLM(CohereConfig(**SIZES, logit_scale=0.25))
    return LlamaForCausalLM(LlamaConfig(**SIZES, tie_word_embeddings=kind == "llama-tied"))


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 300, (3, 20), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100  # the prompt
    labels[2, 14:] = -100  # padding
    mask = torch.ones_like(ids)
    mask[2, 14:] = 0
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def logits_reference(model, b):
    """Per-token log-probs from the model's full logits (what Hugging Face's loss sees)."""
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    targets = b["labels"][:, 1:]
    keep = targets != -100
    return logits[:, :-1][keep].float().log_softmax(-1).gather(1, targets[keep, None]).squeeze(1)


@pytest.mark.parametrize("kind", ["llama", "llama-tied", "cohere"])
@pytest.mark.parametrize("chunk_logits", [300 * 7, 1 << 25])  # several chunks, and one
def test_fused_head_matches_the_logits_path(kind, chunk_logits):
    model = tiny(kind)
    b = batch()
    assert fused_head(model) is not None
    # weights on the log-probs make every token's gradient different
    weights = torch.linspace(0.5, 2.0, int((b["labels"][:, 1:] != -100).sum()))
    fused, rows = labelled_token_logps(model, b, chunk_logits=chunk_logits)
    (fused * weights).sum().backward()
    fused_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    expected = logits_reference(model, b)
    (expected * weights).sum().backward()
    assert torch.allclose(fused, expected, atol=1e-5)
    assert rows.tolist() == [0] * 14 + [1] * 14 + [2] * 8
    for name, param in model.named_parameters():
        assert torch.allclose(fused_grads[name], param.grad, atol=1e-5), name


@pytest.mark.parametrize("kind", ["llama", "llama-tied", "cohere"])
@pytest.mark.parametrize("chunk_logits", [300 * 7, 1 << 25])
def test_keeping_the_softmax_gives_the_recomputed_gradients_exactly(kind, chunk_logits):
    """The softmax kept from the forward is the one the backward would recompute, bit for bit: the
    same log-probs and the same gradients, to the last bit, with or without the budget; and a
    batch over the budget recomputes."""
    weights = torch.linspace(0.5, 2.0, int((batch()["labels"][:, 1:] != -100).sum()))
    runs = {}
    for budget in (0, 1 << 30):  # 0 = recompute (nothing fits), else keep
        model = tiny(kind)
        logps, _ = labelled_token_logps(
            model, batch(), chunk_logits=chunk_logits, keep_softmax_bytes=budget
        )
        node = logps.grad_fn
        kept = bool(node is not None and getattr(node, "kept", None))
        (logps * weights).sum().backward()
        runs[budget] = (kept, logps.detach(), {n: p.grad for n, p in model.named_parameters()})
    assert runs[0][0] is False and runs[1 << 30][0] is True
    assert torch.equal(runs[0][1], runs[1 << 30][1])
    for name, grad in runs[0][2].items():
        assert torch.equal(grad, runs[1 << 30][2][name]), name
    # Without a backward to come (a reference pass), nothing is kept.
    with torch.no_grad():
        logps, _ = labelled_token_logps(tiny(kind), batch(), keep_softmax_bytes=1 << 30)
    assert logps.grad_fn is None


def test_bf16_autocast_stays_close_and_returns_fp32():
    model = tiny("llama")
    b = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, _ = labelled_token_logps(model, b)
    assert fused.dtype == torch.float32
    assert torch.allclose(fused, logits_reference(model, b), atol=0.05)


def test_unsupported_heads_fall_back_to_the_models_logits():
    from peft import LoraConfig, get_peft_model

    model = tiny("llama")
    b = batch()
    expected = logits_reference(model, b)
    lora = get_peft_model(
        model, LoraConfig(r=2, target_modules=["q_proj", "lm_head"], task_type="CAUSAL_LM")
    )
    assert fused_head(lora) is None  # the head itself is adapted
    got = sequence_logps(lora, b)
    assert torch.allclose(got[0], expected[:14].sum(), atol=1e-4)
    capped = tiny("llama")
    capped.config.final_logit_softcapping = 30.0  # tanh-capped logits: not a plain linear head
    assert fused_head(capped) is None


def test_lora_trunk_keeps_the_fused_head_and_its_adapters():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny("llama"), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 1.0)
    b = batch()
    assert fused_head(model) is not None
    with_adapters = sequence_logps(model, b)
    with model.disable_adapter():
        without = sequence_logps(model, b)
    assert not torch.allclose(with_adapters, without, atol=1e-3)
    with_adapters.sum().backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_A" in n)


@pytest.mark.parametrize("kind", ["llama", "cohere"])
def test_casting_norm_outputs_once_changes_no_number(kind):
    """The pre-norm cast gives the projections the bf16 values autocast would have given them; the
    gradients (input gradients summed in bf16) stay as close to fp32's as plain autocast's."""
    from mixmerge.training.autocast import cast_pre_norm_outputs_once

    b = batch()
    fp32 = tiny(kind)
    sequence_logps(fp32, b).sum().backward()
    exact = torch.cat([p.grad.flatten() for p in fp32.parameters()])
    results = []
    for hooked in (False, True):
        model = tiny(kind)
        if hooked:
            assert cast_pre_norm_outputs_once(model) == (2 if kind == "llama" else 1) * 2
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logps = sequence_logps(model, b)
        logps.sum().backward()
        results.append((logps, torch.cat([p.grad.flatten() for p in model.parameters()])))
        # outside autocast the hook does nothing: fp32 stays fp32
        assert model(input_ids=b["input_ids"]).logits.dtype == torch.float32
    (plain, plain_grad), (hooked, hooked_grad) = results
    assert torch.equal(plain, hooked)

    def error(grad: torch.Tensor) -> float:
        return float((grad - exact).norm() / exact.norm())

    assert error(hooked_grad) < 1.2 * error(plain_grad) + 1e-3
