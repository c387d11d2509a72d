"""Generation: left-padded batches give the same responses as one prompt at a time; whole runs are
cached by a fingerprint of the weights, the prompts and the decoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.generation import Decoding, cached_generations, generate_responses
from mixmerge.fingerprints import model_fingerprint
from mixmerge.modeling import ensure_tiny_random
from tests.helpers import CONF

PROMPTS = [
    "Hi",
    "What is the capital of France? Tell me more, please.",
    "Bonjour, ça va ?",
    "नमस्ते",
    "Привет!",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = OmegaConf.load(CONF / "model" / "tiny_random.yaml").architecture
    return ensure_tiny_random(tmp_path_factory.mktemp("gen") / "tiny", arch, seed=0)


def items(prompts: list[str]) -> list[dict]:
    return [
        {"id": f"en-{i}", "language": "en", "set": "general", "task": "open_qa", "prompt": p}
        for i, p in enumerate(prompts)
    ]


def test_left_padded_batches_match_single_prompts(tiny):
    one_by_one = generate_responses(str(tiny), PROMPTS, Decoding(max_new_tokens=12, batch_size=1))
    batched = generate_responses(str(tiny), PROMPTS, Decoding(max_new_tokens=12, batch_size=4))
    assert batched == one_by_one
    assert len(set(one_by_one)) > 1  # different prompts, different continuations


def test_sampling_is_seeded(tiny):
    sample = Decoding(max_new_tokens=12, do_sample=True, temperature=1.5, seed=3)
    first = generate_responses(str(tiny), PROMPTS[:3], sample)
    assert first == generate_responses(str(tiny), PROMPTS[:3], sample)
    assert first != generate_responses(str(tiny), PROMPTS[:3], Decoding(max_new_tokens=12))


def test_generations_are_cached_by_weights_prompts_and_decoding(tiny, tmp_path):
    cache = tmp_path / "cache"
    decoding = Decoding(max_new_tokens=6, batch_size=2)
    first = cached_generations(str(tiny), items(PROMPTS), decoding, cache)
    assert not first.cached and Path(first.cache_file).is_file()
    rows = [json.loads(line) for line in Path(first.cache_file).read_text().splitlines()]
    assert rows == first.rows and [r["id"] for r in rows] == [f"en-{i}" for i in range(5)]
    assert set(rows[0]) == {"id", "language", "set", "task", "prompt", "response"}

    again = cached_generations(str(tiny), items(PROMPTS), decoding, cache)
    assert again.cached and again.rows == first.rows and again.fingerprint == first.fingerprint

    assert not cached_generations(
        str(tiny), items(PROMPTS), Decoding(max_new_tokens=7, batch_size=2), cache
    ).cached
    assert not cached_generations(str(tiny), items(PROMPTS[:4]), decoding, cache).cached

    # A copy with one weight changed is another model; a copy with the same weights is not.
    twin = tmp_path / "twin"
    shutil.copytree(tiny, twin)
    assert cached_generations(str(twin), items(PROMPTS), decoding, cache).cached
    weights = load_file(twin / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.5
    save_file(weights, twin / "model.safetensors", metadata={"format": "pt"})
    assert not cached_generations(str(twin), items(PROMPTS), decoding, cache).cached


def test_results_and_provenance_do_not_change_the_fingerprint(tiny, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny, folder)
    before = model_fingerprint(folder, tmp_path / "cache")
    (folder / "eval_results.json").write_text("{}")
    (folder / "mixmerge.json").write_text('{"kind": "train"}')
    assert model_fingerprint(folder, tmp_path / "cache") == before == model_fingerprint(folder)
    (folder / "config.json").write_text(
        (folder / "config.json").read_text().replace('"hidden_act"', '"hidden_act" ', 1)
    )
    assert model_fingerprint(folder, tmp_path / "cache") != before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "generation.max_new_tokens=0: expected a positive integer"),
        ({"batch_size": -1}, "generation.batch_size=-1: expected a positive integer"),
        (
            {"do_sample": True, "temperature": 0},
            "generation.temperature=0: expected a number > 0 when sampling",
        ),
        ({"dtype": "float33"}, "generation.dtype=float33: expected a torch dtype"),
        ({"decoder": "beam"}, "generation.decoder=beam: expected one of fast, generate"),
    ],
)
def test_bad_decoding_settings(kwargs, message):
    with pytest.raises(MixmergeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Decoding(**kwargs)
