"""Less padding, same results: packed SFT rows, length-grouped batches, the reference pass."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import pytest
import torch
from omegaconf import OmegaConf

from mixmerge.data.datamodule import SFTCollator, encode_records, pack, row_lengths
from mixmerge.modeling import ensure_tiny_random, load_causal_lm, load_tokenizer
from mixmerge.training.logprobs import labelled_token_logps
from mixmerge.training.reference import reference_logps
from mixmerge.training.resumable import LengthGroupedSampler
from mixmerge.training.sft import SFTModule

ARCH = OmegaConf.load(Path(__file__).parents[1] / "conf/model/tiny_random.yaml").architecture


def sft_rows(lengths: list[int]) -> datasets.Dataset:
    rng = random.Random(0)
    rows = []
    for n in lengths:
        ids = [rng.randrange(3, 250) for _ in range(n)]
        prompt = max(1, n // 3)
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return datasets.Dataset.from_list(rows)


def test_best_fit_packing_keeps_every_example_once_and_fills_rows():
    rng = random.Random(1)
    lengths = [rng.randint(60, 250) for _ in range(400)]
    examples = sft_rows(lengths)
    rows = pack(examples, 256)
    assert all(len(r["input_ids"]) <= 256 for r in rows)
    assert all(len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) for r in rows)
    # every example appears exactly once, whole: its tokens follow one position run 0..n-1
    pieces = []
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [len(r["input_ids"])]
        pieces += [tuple(r["input_ids"][a:b]) for a, b in zip(starts, starts[1:], strict=False)]
    assert sorted(pieces) == sorted(tuple(x) for x in examples["input_ids"])
    # No two examples over half a row share one: that many rows at least, or the tokens' worth.
    lower_bound = max(sum(n > 128 for n in lengths), -(-sum(lengths) // 256))
    assert len(rows) <= 1.05 * lower_bound  # 259 rows for a bound of 250
    assert sum(lengths) / (256 * len(rows)) > 0.9  # next-fit in data order: 0.74 on this mix


def test_packed_rows_give_each_example_its_own_loss(cache_dir):
    path = ensure_tiny_random(cache_dir / "pack-tiny", ARCH, seed=0)
    model = load_causal_lm(str(path)).eval()
    examples = sft_rows([9, 23, 14, 30, 5])
    alone = {}
    for ex in examples:
        b = SFTCollator(0)([ex])
        alone[tuple(ex["input_ids"])] = labelled_token_logps(model, b)[0]
    rows = pack(examples, 40)
    assert len(rows) < len(examples)
    packed, row_of = labelled_token_logps(model, SFTCollator(0)(rows))
    expected = []
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [len(r["input_ids"])]
        for a, b in zip(starts, starts[1:], strict=False):
            expected.append(alone[tuple(r["input_ids"][a:b])])
    assert torch.allclose(packed, torch.cat(expected), atol=1e-5)


def test_length_grouped_batches_cover_every_row_with_less_padding():
    rng = random.Random(2)
    lengths = [rng.randint(20, 400) for _ in range(203)]
    data = list(range(len(lengths)))

    def batches(replicas: int, rank: int, epoch: int) -> list[list[int]]:
        sampler = LengthGroupedSampler(
            data, lengths, batch_size=4, num_replicas=replicas, rank=rank, seed=7
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        return [order[i : i + 4] for i in range(0, len(order), 4)]

    one = batches(1, 0, 0)
    assert sorted(i for b in one for i in b) == data
    assert one == batches(1, 0, 0) and one != batches(1, 0, 1)  # a function of (seed, epoch)
    assert max(lengths) in [lengths[i] for i in one[0]]  # the largest batch comes first

    def padding(bs: list[list[int]]) -> float:
        padded = sum(max(lengths[i] for i in b) * len(b) for b in bs)
        return 1 - sum(lengths[i] for b in bs for i in b) / padded

    shuffled = list(range(len(lengths)))
    random.Random(3).shuffle(shuffled)
    assert padding(one) < 0.05 < 0.15 < padding([shuffled[i : i + 4] for i in range(0, 203, 4)])
    # two replicas: disjoint shares of every global batch, together the whole data
    r0, r1 = batches(2, 0, 0), batches(2, 1, 0)
    flat0, flat1 = [i for b in r0 for i in b], [i for b in r1 for i in b]
    assert len(flat0) == len(flat1) == 102
    assert set(flat0) | set(flat1) == set(data)


def test_packed_preference_batches_score_each_sequence_as_alone(cache_dir):
    from mixmerge.training.dpo import PreferenceCollator, concatenated_logps
    from mixmerge.training.logprobs import sequence_count

    path = ensure_tiny_random(cache_dir / "dpo-pack-tiny", ARCH, seed=0)
    tokenizer = load_tokenizer(str(path))
    model = load_causal_lm(str(path)).eval()
    pairs = [
        {"prompt": "Q" * (5 + 7 * i), "chosen": "yes " * (2 + i), "rejected": "no" * (9 - i)}
        for i in range(5)
    ]
    examples, _ = encode_records(pairs, tokenizer, "dpo", max_length=512)
    padded = PreferenceCollator(tokenizer.pad_token_id)(list(examples))
    packed = PreferenceCollator(tokenizer.pad_token_id, pack_length=200)(list(examples))
    assert sequence_count(padded) == sequence_count(packed) == 10
    assert packed["input_ids"].shape[0] < 10 and packed["input_ids"].shape[1] <= 200
    # every real token is counted once, and nothing else
    assert int(packed["attention_mask"].sum()) == int(padded["attention_mask"].sum())
    for got, want in zip(
        concatenated_logps(model, packed), concatenated_logps(model, padded), strict=True
    ):
        assert torch.allclose(got, want, atol=1e-4)


def test_row_lengths_of_pairs_count_the_longer_side():
    pairs = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5, 6]}]
    assert row_lengths(pairs) == [5]
    assert row_lengths(datasets.Dataset.from_list(pairs)) == [5]


def test_reference_pass_on_the_loaded_policy_equals_a_fresh_load(cache_dir, tmp_path):
    path = ensure_tiny_random(cache_dir / "ref-tiny", ARCH, seed=0)
    tokenizer = load_tokenizer(str(path))
    pairs = [
        {"prompt": f"Question {i}?" * (i + 1), "chosen": "Yes. " * (3 + i), "rejected": "No."}
        for i in range(5)
    ]
    examples, _ = encode_records(pairs, tokenizer, "dpo", max_length=512)
    args = {"pad_token_id": tokenizer.pad_token_id, "max_length": 512, "precision": "32-true"}
    fresh = reference_logps(str(path), examples, cache_dir=tmp_path / "a", batch_size=2, **args)
    module = SFTModule(str(path), optimizer=torch.optim.AdamW)
    module.configure_model()
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    reused = reference_logps(
        str(path), examples, cache_dir=tmp_path / "b", batch_size=3, loaded=module.model, **args
    )
    assert torch.allclose(fresh[0], reused[0], atol=1e-4)
    assert torch.allclose(fresh[1], reused[1], atol=1e-4)
    # rows come back in the data's order, not the length order they were scored in
    assert not torch.equal(fresh[0], fresh[0].sort().values)
    assert module.model.training
    assert all(torch.equal(before[k], v) for k, v in module.model.state_dict().items())


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_manifest_says_how_rows_were_batched(train_cfg, objective):
    import json

    from mixmerge.training.pipeline import train

    cfg = train_cfg(
        f"objective={objective}",
        "languages=en",
        "data.max_examples_per_language=8",
        "data.max_length=1024",  # byte tokens: room for several examples per row
        "trainer.max_steps=1",
    )
    train(cfg)
    manifest = json.loads((Path(cfg.paths.output_dir) / "mixture.json").read_text())
    assert manifest["packing"] is True
    if objective == "sft":
        assert manifest["training_rows"] < manifest["total"]  # several examples per row
