"""The fast greedy decoder gives `model.generate`'s greedy tokens, row for row: with rows leaving
the batch early, with the preallocated cache (full and sliding-window layers) and its fallback,
with bfloat16 linear layers on packed weights, and with the DRY penalty on repeats."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import LogitsProcessorList
from transformers.cache_utils import DynamicLayer

from mixmerge.evaluation.decoder import (
    greedy_decode,
    packed_linears,
    preallocated_cache,
    transposed_head,
)
from mixmerge.evaluation.generation import Decoding, generate_responses
from mixmerge.evaluation.repetition import Dry, ResponseDRY, breaker_ids
from mixmerge.modeling import ensure_tiny_random, load_causal_lm, load_tokenizer
from tests.helpers import CONF

TEXTS = [
    "hello there",
    "a much longer prompt about many different things, with commas, and more words",
    "x",
    "Bonjour, comment ça va ?",
    "Привет, мир",
    "नमस्ते दुनिया",
]
NEW = 24


def build(tmp_path_factory: pytest.TempPathFactory, config: str, **arch: object) -> Path:
    base = OmegaConf.load(CONF / "model" / f"{config}.yaml").architecture
    merged = OmegaConf.merge(base, arch)
    return ensure_tiny_random(tmp_path_factory.mktemp(config) / "m", merged, seed=0)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build(tmp_path_factory, "tiny_random")


@pytest.fixture(scope="module")
def gemma_wide(tmp_path_factory):
    # A window longer than prompt + answer: the sliding layer is preallocated too.
    return build(tmp_path_factory, "tiny_random_gemma3", sliding_window=256)


@pytest.fixture(scope="module")
def gemma_narrow(tmp_path_factory):
    # A window of 8: the sequence slides, so the decoder must fall back to the growing cache.
    return build(tmp_path_factory, "tiny_random_gemma3")


def load(path, dtype):
    """The tokenizer (left padding), the model in `dtype` and the encoded TEXTS."""
    tok = load_tokenizer(path)
    tok.padding_side = "left"
    model = load_causal_lm(path, dtype).eval()
    return tok, model, tok(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)


def reference(model, tok, enc, stops):
    """generate()'s greedy tokens, each row cut after its first stop token (generate pads after)."""
    out = model.generate(
        **enc,
        max_new_tokens=NEW,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tok.pad_token_id,
        eos_token_id=sorted(stops) or None,
    )[:, enc["input_ids"].shape[1] :].tolist()
    return [r[: next((i + 1 for i, t in enumerate(r) if t in stops), len(r))] for r in out]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("which", ["llama", "gemma_wide", "gemma_narrow"])
def test_fast_greedy_equals_generate(which, dtype, request):
    tok, model, enc = load(str(request.getfixturevalue(which)), dtype)
    with torch.inference_mode():
        free = reference(model, tok, enc, set())
        # Stop on the tokens the model emits most, so rows finish at different steps and leave the
        # batch while the others go on.
        counts = torch.bincount(torch.tensor([t for row in free for t in row]))
        stops = set(counts.argsort(descending=True)[:2].tolist())
        want = reference(model, tok, enc, stops)
        with packed_linears(model) as packed, transposed_head(model) as transposed:
            got = greedy_decode(model, enc["input_ids"], enc["attention_mask"], NEW, stops)
    assert got == want
    assert transposed == (dtype == "float32")  # the head runs as (W hᵀ)ᵀ in float32
    lengths = {len(r) for r in got}
    assert len(lengths) > 1 and min(lengths) < NEW  # some rows really stopped early
    # Packing applies exactly to bfloat16 on a CPU with oneDNN's bf16 support.
    if dtype == "bfloat16" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert packed == sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    else:
        assert packed == 0
    # The model is itself again afterwards.
    assert not any("forward" in vars(m) for m in model.modules())


def test_the_transposed_head_gives_the_same_logits(gemma_wide, llama):
    """(W hᵀ)ᵀ is h Wᵀ: the same dot products, which the BLAS may sum in another order for some row
    counts, so equal to float32 rounding (and the greedy tokens are generate's: the test above), on
    the tiny models' heads and on a vocabulary-sized one of the default model's hidden size."""
    for path in (gemma_wide, llama):
        tok, model, enc = load(str(path), "float32")
        with torch.inference_mode():
            plain = model(**enc, logits_to_keep=1).logits  # a decoding step's shape
            with transposed_head(model) as applied:
                fast = model(**enc, logits_to_keep=1).logits
        assert applied and fast.shape == plain.shape
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        assert not any("forward" in vars(m) for m in model.modules())
    head = torch.nn.Linear(640, 16384, bias=False)
    holder = type("M", (), {"get_output_embeddings": lambda self: head})()
    with torch.inference_mode():
        for rows in (torch.randn(32, 1, 640), torch.randn(3, 1, 640), torch.randn(1, 1, 640)):
            plain = head(rows)
            with transposed_head(holder):
                fast = head(rows)
            torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
            assert torch.equal(fast.argmax(-1), plain.argmax(-1))
    # Not where it does not apply: a bfloat16 head is left alone.
    _, bf16, _ = load(str(llama), "bfloat16")
    with transposed_head(bf16) as applied:
        assert not applied


def test_cache_is_preallocated_only_where_nothing_slides(gemma_wide, gemma_narrow, llama):
    wide = load_causal_lm(str(gemma_wide), "float32").config
    assert preallocated_cache(wide, 100) is not None
    assert preallocated_cache(wide, 256) is None  # would slide at the window's end
    assert preallocated_cache(load_causal_lm(str(gemma_narrow), "float32").config, 100) is None
    cache = preallocated_cache(load_causal_lm(str(llama), "float32").config, 10)
    assert cache is not None and all(isinstance(layer, DynamicLayer) for layer in cache.layers)


def test_the_evaluation_path_gives_the_same_text_with_either_decoder(gemma_wide):
    fast = generate_responses(str(gemma_wide), TEXTS, Decoding(max_new_tokens=16, batch_size=4))
    ref = generate_responses(
        str(gemma_wide), TEXTS, Decoding(max_new_tokens=16, batch_size=4, decoder="generate")
    )
    assert fast == ref and any(fast)


def test_the_bf16_maximum_is_generates_float32_argmax_ties_included():
    """The decoder takes max(-1).indices on the logits' own dtype; generate casts to float32 and
    takes argmax. With many exact ties (bf16 has 8 bits of mantissa), both pick the first."""
    import torch

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randint(0, 6, (64, 4096), generator=gen) * 0.125).to(torch.bfloat16)
    ours = logits.max(-1).indices
    assert torch.equal(ours, logits.float().argmax(-1))
    assert (logits == logits.max(-1, keepdim=True).values).sum(-1).min() > 1  # ties in every row


def test_breaker_ids_are_the_tokens_containing_a_breaker_character(gemma_wide):
    tok = load_tokenizer(str(gemma_wide))
    ids = breaker_ids(tok, "\n:")
    texts = tok.batch_decode([[i] for i in sorted(ids)])
    assert ids and all("\n" in t or ":" in t for t in texts)
    assert tok.convert_tokens_to_ids("hello") not in ids
    assert breaker_ids(tok, "") == frozenset()


def reference_dry(model, tok, enc, dry):
    start = enc["input_ids"].shape[1]
    out = model.generate(
        **enc,
        max_new_tokens=32,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tok.pad_token_id,
        eos_token_id=None,
        logits_processor=LogitsProcessorList([ResponseDRY(dry, start)]),
    )
    return out[:, start:].tolist()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("which", ["llama", "gemma_wide"])
def test_fast_decoder_with_dry_equals_generate_with_dry(which, dtype, request):
    tok, model, enc = load(str(request.getfixturevalue(which)), dtype)
    dry = Dry(0.8, 1.75, 2, breaker_ids(tok, '\n:"*'))
    with torch.inference_mode():
        plain = greedy_decode(model, enc["input_ids"], enc["attention_mask"], 32, set())
        want = reference_dry(model, tok, enc, dry)
        with packed_linears(model):
            got = greedy_decode(model, enc["input_ids"], enc["attention_mask"], 32, set(), dry)
    assert got == want
    assert got != plain  # tiny random models loop: the penalty changed something


def test_dry_reduces_repeats_on_a_looping_model(llama):
    def repeated_trigrams(rows):
        grams = [tuple(r[i : i + 3]) for r in rows for i in range(len(r) - 2)]
        return len(grams) - len(set(grams))

    tok, model, enc = load(str(llama), "float32")
    dry = Dry(0.8, 1.75, 2, frozenset())
    with torch.inference_mode():
        plain = greedy_decode(model, enc["input_ids"], enc["attention_mask"], 32, set())
        guarded = greedy_decode(model, enc["input_ids"], enc["attention_mask"], 32, set(), dry)
    assert repeated_trigrams(guarded) < repeated_trigrams(plain)


def test_the_evaluation_path_with_dry_is_the_same_with_either_decoder(gemma_wide):
    kw = {"max_new_tokens": 16, "batch_size": 4, "dry_multiplier": 0.8}
    fast = generate_responses(str(gemma_wide), TEXTS, Decoding(**kw))
    ref = generate_responses(str(gemma_wide), TEXTS, Decoding(**kw, decoder="generate"))
    plain = generate_responses(str(gemma_wide), TEXTS, Decoding(max_new_tokens=16, batch_size=4))
    assert fast == ref and fast != plain
