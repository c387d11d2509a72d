"""The default model's architecture, Gemma 3, through every mechanism of the training path.

A tiny random Gemma 3 built from `conf/model/tiny_random_gemma3.yaml` (one sliding-window layer with
a window far shorter than a packed row, one global layer, sandwich norms, tied scaled embeddings,
Gemma's chat format) stands in for the 270M default, as the tiny Llama does for Llama-family models.
The GGUF conversion's bad inputs are checked with fake chunk packages on sys.path.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from mixmerge.data.datamodule import SFTCollator, pack
from mixmerge.data.formatting import encode_example, prompt_text
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.generation import Decoding, generate_responses
from mixmerge.merging.pipeline import merge
from mixmerge.modeling import (
    GEMMA_TEMPLATE,
    ensure_gguf_converted,
    ensure_tiny_random,
    load_causal_lm,
    load_tokenizer,
)
from mixmerge.training.autocast import cast_pre_norm_outputs_once
from mixmerge.training.logprobs import fused_head, labelled_token_logps, sequence_logps
from mixmerge.training.pipeline import train
from tests.merge_helpers import make_finetuned, tensors

CONF = OmegaConf.load(Path(__file__).parents[1] / "conf/model/tiny_random_gemma3.yaml")
ARCH = CONF.architecture


@pytest.fixture(scope="module")
def gemma(cache_dir: Path) -> Path:
    return ensure_tiny_random(cache_dir / "gemma3-tiny", ARCH, seed=0, chat_template="gemma")


def test_tiny_gemma_has_gemmas_architecture_and_chat_format(gemma):
    model = load_causal_lm(str(gemma))
    assert model.config.model_type == "gemma3_text"
    assert model.config.layer_types == ["sliding_attention", "full_attention"]
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    tokenizer = load_tokenizer(str(gemma))
    assert tokenizer.chat_template == GEMMA_TEMPLATE
    assert tokenizer.eos_token == "<end_of_turn>"
    text = prompt_text(tokenizer, "Hola")
    assert text == "<bos><start_of_turn>user\nHola<end_of_turn>\n<start_of_turn>model\n"
    # The response is labelled through its end-of-turn token, so the model learns to stop.
    ex = encode_example(tokenizer, {"prompt": "Hola", "chosen": "¡Hola!"}, "sft", 64)
    labels = [t for t in ex["labels"] if t != -100]
    assert tokenizer.decode(labels) == "¡Hola!<end_of_turn>\n"


def random_rows(lengths: list[int]) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(0)
    rows = []
    for n in lengths:
        ids = torch.randint(3, 250, (n,), generator=generator).tolist()
        prompt = max(1, n // 3)
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def test_packed_rows_equal_each_sequence_alone_with_sliding_windows(gemma):
    """Sequences longer than the 8-token window, packed together: the sliding layer must neither
    see past its window nor across a sequence boundary, the global layer only the latter."""
    import datasets

    model = load_causal_lm(str(gemma)).eval()
    examples = datasets.Dataset.from_list(random_rows([19, 31, 12, 27, 9]))
    alone = {
        tuple(ex["input_ids"]): labelled_token_logps(model, SFTCollator(0)([ex]))[0]
        for ex in examples
    }
    rows = pack(examples, 48)
    assert len(rows) < len(examples)
    packed, _ = labelled_token_logps(model, SFTCollator(0)(rows))
    expected = []
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [len(r["input_ids"])]
        for a, b in zip(starts, starts[1:], strict=False):
            expected.append(alone[tuple(r["input_ids"][a:b])])
    torch.testing.assert_close(packed, torch.cat(expected), atol=1e-5, rtol=0)


def test_fused_head_matches_gemmas_own_logits(gemma):
    model = load_causal_lm(str(gemma))
    assert fused_head(model) is not None
    batch = SFTCollator(0)(random_rows([20, 14]))
    results = []
    for fused in (True, False):
        model.zero_grad()
        if fused:
            logps = sequence_logps(model, batch)
        else:  # the model's own logits, with its embedding scaling and tied head
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            lp = torch.log_softmax(logits.logits[:, :-1].float(), -1)
            labels = batch["labels"][:, 1:]
            mask = labels != -100
            picked = lp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
            logps = (picked * mask).sum(-1)
        logps.sum().backward()
        results.append((logps.detach(), model.get_input_embeddings().weight.grad.clone()))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)


def test_one_cast_per_pre_norm_changes_no_number(gemma):
    batch = SFTCollator(0)(random_rows([20, 14]))
    outputs = []
    for hooked in (False, True):
        model = load_causal_lm(str(gemma))
        if hooked:
            # input_layernorm and pre_feedforward_layernorm per layer, not the sandwich norms
            assert cast_pre_norm_outputs_once(model) == 2 * ARCH.num_hidden_layers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs.append(sequence_logps(model, batch).detach())
    assert torch.equal(outputs[0], outputs[1])


TINY_GEMMA = [
    "model=tiny_random_gemma3",
    "trainer.max_steps=3",
    "data.max_examples_per_language=8",
    "languages=en_fr_es",
]


@pytest.mark.parametrize(
    "extra",
    [[], ["peft=lora"], ["objective=dpo"]],
    ids=["sft", "lora", "dpo"],
)
def test_training_exports_a_gemma_that_reloads_and_generates(train_cfg, extra):
    cfg = train_cfg(*TINY_GEMMA, *extra)
    metrics = train(cfg)
    assert metrics["steps"] == 3
    out = Path(cfg.paths.models_dir) / cfg.output_name
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "gemma3_text"
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == GEMMA_TEMPLATE
    before = tensors(Path(cfg.paths.cache_dir) / "models" / "tiny-random-gemma3")
    after = tensors(out)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "training changed no weight"
    responses = generate_responses(str(out), ["Bonjour"], Decoding(max_new_tokens=4))
    assert isinstance(responses[0], str)


def test_generation_stops_at_the_end_of_turn_token(gemma, tmp_path):
    """A model that always emits <end_of_turn> first answers with nothing, in both dtypes' paths."""
    model = AutoModelForCausalLM.from_pretrained(gemma)
    tokenizer = AutoTokenizer.from_pretrained(gemma)
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # tied: the input embedding too
        model.get_output_embeddings().weight[end].fill_(1.0)
        model.model.norm.weight.fill_(10.0)
    model.generation_config.eos_token_id = None  # only the tokenizer knows the turn's end
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    out = generate_responses(str(tmp_path / "m"), ["Hi", "Salut"], Decoding(max_new_tokens=6))
    assert out == ["", ""]


def test_gemma_models_merge_reload_and_generate(gemma, tmp_path):
    general = make_finetuned(gemma, tmp_path / "general", seed=1)
    safety = make_finetuned(gemma, tmp_path / "safety", seed=2)
    from mixmerge.config import compose_config

    for method in ("linear", "ties"):
        cfg = compose_config(
            "merge",
            [f"recipe.general={general}", f"recipe.safety={safety}", f"merge={method}"],
            tmp_path / method,
        )
        merge(cfg)
        out = Path(cfg.paths.models_dir) / cfg.output_name
        model = AutoModelForCausalLM.from_pretrained(out)
        assert model.config.model_type == "gemma3_text"
        assert AutoTokenizer.from_pretrained(out).chat_template == GEMMA_TEMPLATE
        ids = torch.tensor([[2, 70, 71, 72]])
        assert torch.isfinite(model(ids).logits).all()
        if method == "linear":  # w = 0.5 by default: the average of the parents
            g, s, m = tensors(general), tensors(safety), tensors(out)
            name = "model.layers.0.self_attn.q_proj.weight"
            torch.testing.assert_close(m[name], (g[name] + s[name]) / 2, atol=1e-6, rtol=0)
        assert generate_responses(str(out), ["Hi"], Decoding(max_new_tokens=3))


# --- the GGUF conversion's bad inputs, with fake chunk packages ---------------------------------


@pytest.fixture
def fake_chunks(tmp_path, monkeypatch):
    """Two chunk packages holding the halves of a 'GGUF' file (not a real one: the checks under
    test come before any parsing)."""
    payload = b"GGUF" + bytes(range(256)) * 8
    root = tmp_path / "site"
    names = []
    for i, part in enumerate((payload[:700], payload[700:])):
        name = f"fakegguf_part{i + 1}"
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "data" / f"fake.gguf.part{i:02d}").write_bytes(part)
        names.append(name)
    (root / "fakegguf").mkdir()
    (root / "fakegguf" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    for name in [*names, "fakegguf"]:
        sys.modules.pop(name, None)
    return names, hashlib.sha256(payload).hexdigest(), root


def leftovers(models: Path) -> list[Path]:
    return list(models.iterdir()) if models.exists() else []


def test_a_sha256_mismatch_stops_before_conversion_and_leaves_nothing(fake_chunks, tmp_path):
    names, _, _ = fake_chunks
    models = tmp_path / "models"
    with pytest.raises(MixmergeError, match=r"model.gguf_sha256: fake.gguf .* has sha256"):
        ensure_gguf_converted("fakegguf", "fake.gguf", models / "x", chunks=names, sha256="0" * 64)
    assert leftovers(models) == []


def test_a_missing_chunk_package_is_named(fake_chunks, tmp_path):
    names, digest, root = fake_chunks
    import shutil

    shutil.rmtree(root / names[1])
    sys.modules.pop(names[1], None)
    models = tmp_path / "models"
    with pytest.raises(
        MixmergeError, match=rf"model.gguf_chunks={names[1]}: package not installed"
    ):
        ensure_gguf_converted("fakegguf", "fake.gguf", models / "x", chunks=names, sha256=digest)
    assert leftovers(models) == []


def test_a_gguf_transformers_cannot_read_is_one_error(fake_chunks, tmp_path):
    names, digest, _ = fake_chunks
    models = tmp_path / "models"
    with pytest.raises(MixmergeError, match=r"model.gguf_file=.*fake.gguf: cannot be read"):
        ensure_gguf_converted("fakegguf", "fake.gguf", models / "x", chunks=names, sha256=digest)
    assert leftovers(models) == []


def test_a_model_folder_without_a_chat_template_is_refused(gemma, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(gemma)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(MixmergeError, match="no chat template"):
        load_tokenizer(str(tmp_path))


def test_a_bundled_adapter_is_merged_into_the_weights(gemma, tmp_path):
    """What `model=gemma3_270m` does after conversion: the LoRA update lands in the weights."""
    from peft import LoraConfig, get_peft_model

    from mixmerge.modeling import _merge_adapter, bundled_adapter

    base = AutoModelForCausalLM.from_pretrained(gemma)
    torch.manual_seed(0)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    name = "model.layers.0.self_attn.q_proj.weight"
    expected = peft_model.merge_and_unload().state_dict()[name]
    fresh = AutoModelForCausalLM.from_pretrained(gemma)
    before = fresh.state_dict()[name].clone()
    merged = _merge_adapter(fresh, bundled_adapter(str(tmp_path / "adapter")))
    torch.testing.assert_close(merged.state_dict()[name], expected)
    assert not torch.equal(merged.state_dict()[name], before)
    with pytest.raises(MixmergeError, match="model.adapter=nope: no adapter_config.json"):
        bundled_adapter("nope")
    # The shipped adapter is found by name.
    assert bundled_adapter("gemma3-270m-chat").name == "gemma3-270m-chat"


def test_fast_gguf_loading_parses_once_and_gives_the_same_weights(tmp_path):
    """The conversion parses the GGUF once (transformers builds three readers) and de-quantizes
    large tensors by rows on every core: the same values, and everything restored after."""
    import gguf
    import numpy as np

    from mixmerge.modeling import fast_gguf_loading

    x = np.random.default_rng(0).standard_normal((16384, 256)).astype(np.float32)
    q = gguf.quantize(x, gguf.GGMLQuantizationType.Q8_0)  # 4.4 MB: large enough to be split
    alone = gguf.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
    writer = gguf.GGUFWriter(tmp_path / "t.gguf", "llama")
    writer.add_uint32("test.value", 7)
    writer.add_tensor("w", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with fast_gguf_loading(workers=3) as workers:
        assert workers == 3 and gguf.dequantize is not gguf.quants.dequantize
        split = gguf.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
        small = gguf.dequantize(q[:8], gguf.GGMLQuantizationType.Q8_0)  # too small: one call
        first, again = (
            gguf.GGUFReader(tmp_path / "t.gguf"),
            gguf.GGUFReader(str(tmp_path / "t.gguf")),
        )
        assert first is again  # parsed once
        assert np.array_equal(
            gguf.dequantize(first.tensors[0].data, first.tensors[0].tensor_type), alone
        )
    assert gguf.dequantize is gguf.quants.dequantize  # restored
    assert gguf.GGUFReader is gguf.gguf_reader.GGUFReader
    assert split.shape == alone.shape and np.array_equal(split, alone)
    assert np.array_equal(small, alone[:8])


def test_the_decode_bound_replays_the_fast_decoders_tokens(gemma):
    """benchmarks.decode_bound on the tiny Gemma: the fast decoder matches generate, and the timed
    trunk-only replay and prefill run on the same batches (the figures are for the benchmark)."""
    from benchmarks.decode_bound import measure

    out = measure(str(gemma), n_prompts=12, seed=0, new_tokens=6)
    assert out["prompts"] == 12 and out["identical"] == 12
    assert out["replay_identical"]  # the trunk-only pass ran the fast decoder's very steps
    assert 0 < out["new_tokens"] <= 12 * 6
    assert min(out["generate_s"], out["fast_s"], out["trunk_only_s"], out["prefill_only_s"]) > 0


def test_a_cached_conversion_is_rebuilt_when_the_adapter_changes(fake_chunks, tmp_path):
    """A new version of the bundled adapter must not be served from a cache built with the old
    one: the cached folder records the adapter's digest, and a mismatch converts again."""
    from mixmerge.fingerprints import model_fingerprint
    from mixmerge.modeling import ADAPTER_DIGEST_FILE, adapter_digest, adapter_is_current

    names, digest, _ = fake_chunks
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    (adapter / "mixmerge.json").write_text("{}")  # provenance: not part of the digest
    cached = tmp_path / "models" / "x"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text('{"model_type": "gemma3_text"}')
    (cached / "model.safetensors").write_bytes(b"")
    fingerprint = model_fingerprint(cached)
    (cached / ADAPTER_DIGEST_FILE).write_text(adapter_digest(adapter) + "\n")
    assert model_fingerprint(cached) == fingerprint  # the marker is not a model file
    assert adapter_is_current(cached, adapter) and not adapter_is_current(cached, None)
    # Current: returned as it is, the (unreadable) chunks never touched.
    assert (
        ensure_gguf_converted(
            "fakegguf", "fake.gguf", cached, chunks=names, sha256=digest, adapter=adapter
        )
        == cached
    )
    # A retrained adapter: converted again — here the fake GGUF's own error proves it tried.
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")
    assert not adapter_is_current(cached, adapter)
    with pytest.raises(MixmergeError, match="cannot be read"):
        ensure_gguf_converted(
            "fakegguf", "fake.gguf", cached, chunks=names, sha256=digest, adapter=adapter
        )
    assert (cached / "config.json").is_file()  # the failed attempt left the old folder intact
