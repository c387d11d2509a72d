"""Preference training: the loss against hand-computed values, one forward pass, the reference cache, LoRA, chaining."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mixmerge.data.datamodule import encode_records
from mixmerge.errors import MixmergeError
from mixmerge.modeling import ensure_tiny_random, load_causal_lm, load_tokenizer
from mixmerge.provenance import read_provenance
from mixmerge.training.dpo import DPOModule, PreferenceCollator, concatenated_logps
from mixmerge.training.losses import preference_loss
from mixmerge.training.pipeline import train
from mixmerge.training.reference import reference_logps
from tests.helpers import run_cli

ARCH = OmegaConf.load(Path(__file__).parents[1] / "conf/model/tiny_random.yaml").architecture
PAIRS = [
    {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A car is not a fruit."},
    {"prompt": "Dis bonjour.", "chosen": "Bonjour !", "rejected": "Non."},
    {"prompt": "2+2?", "chosen": "4", "rejected": "Twenty-two, obviously."},
]


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize(
    ("loss_type", "eps", "expected"),
    # policy margin 3 - 1 = 2, reference margin 1 - 0.5 = 0.5, h = 1.5, beta = 0.5 → βh = 0.75
    [
        ("sigmoid", 0.0, -math.log(sig(0.75))),
        ("sigmoid", 0.1, -0.9 * math.log(sig(0.75)) - 0.1 * math.log(sig(-0.75))),
        ("robust", 0.1, (-0.9 * math.log(sig(0.75)) + 0.1 * math.log(sig(-0.75))) / 0.8),
        ("hinge", 0.0, 0.25),
        ("ipo", 0.0, (1.5 - 1 / (2 * 0.5)) ** 2),
    ],
)
def test_preference_loss_hand_computed(loss_type, eps, expected):
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    losses = preference_loss(
        t(3.0, 3.0), t(1.0, 1.0), t(1.0, 1.0), t(0.5, 0.5), 0.5, loss_type, eps
    )
    assert losses.shape == (2,)
    assert losses[0].item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 0.0}, "objective.beta=0.0: expected a number > 0"),
        ({"beta": -1}, "objective.beta=-1"),
        ({"loss_type": "kto"}, "objective.loss_type=kto: expected one of"),
        ({"label_smoothing": 0.5}, "objective.label_smoothing=0.5"),
    ],
)
def test_preference_loss_rejects_bad_parameters(kwargs, message):
    args = {"beta": 0.1, "loss_type": "sigmoid", "label_smoothing": 0.0, **kwargs}
    with pytest.raises(MixmergeError, match=message):
        preference_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), **args)


@pytest.fixture
def tiny(cache_dir):
    path = ensure_tiny_random(cache_dir / "dpo-tiny", ARCH, seed=0)
    tokenizer = load_tokenizer(str(path))
    examples, dropped = encode_records(PAIRS, tokenizer, "dpo", max_length=256)
    assert dropped == 0
    return path, tokenizer, examples


def test_concatenated_forward_equals_separate_passes(tiny):
    path, tokenizer, examples = tiny
    model = load_causal_lm(str(path)).eval()
    batch = PreferenceCollator(tokenizer.pad_token_id)(list(examples))
    chosen, rejected = concatenated_logps(model, batch)
    for i, ex in enumerate(examples):
        for side, got in (("chosen_ids", chosen[i]), ("rejected_ids", rejected[i])):
            ids = torch.tensor([ex["prompt_ids"] + ex[side]])
            labels = torch.tensor([[-100] * len(ex["prompt_ids"]) + ex[side]])
            logps = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            targets = labels[0, 1:]
            keep = targets != -100
            alone = logps[keep].gather(1, targets[keep, None]).sum()
            assert got.item() == pytest.approx(alone.item(), abs=1e-4)
    # prompt tokens carry no log-prob, in the chosen rows and the rejected rows alike
    n = len(examples)
    for i, ex in enumerate(examples):
        for row in (i, n + i):
            assert (batch["labels"][row, : len(ex["prompt_ids"])] == -100).all()
            assert (batch["labels"][row, len(ex["prompt_ids"])] != -100).item()


def test_reference_cache_reused_and_invalidated(tiny, tmp_path, cache_dir):
    path, tokenizer, examples = tiny
    args = {
        "pad_token_id": tokenizer.pad_token_id,
        "cache_dir": tmp_path,
        "max_length": 256,
        "precision": "32-true",
    }
    c1, r1, info1 = reference_logps(str(path), examples, **args)
    c2, r2, info2 = reference_logps(str(path), examples, **args)
    assert not info1["reused"] and info2["reused"] and info1["key"] == info2["key"]
    assert torch.equal(c1, c2) and torch.equal(r1, r2)
    fewer, _ = encode_records(PAIRS[:2], tokenizer, "dpo", max_length=256)
    assert not reference_logps(str(path), fewer, **args)[2]["reused"]
    other = ensure_tiny_random(cache_dir / "dpo-tiny-other", ARCH, seed=1)
    _, _, info3 = reference_logps(str(other), examples, **args)
    assert not info3["reused"] and info3["key"] != info1["key"]
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_lora_reference_is_the_base_model(tiny):
    from peft import LoraConfig

    path, tokenizer, examples = tiny
    module = DPOModule(
        str(path),
        optimizer=torch.optim.AdamW,
        lora=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    module.configure_model()
    torch.manual_seed(0)
    for name, param in module.model.named_parameters():
        if "lora_B" in name:  # make the adapters matter
            param.data.normal_(0, 0.5)
    batch = PreferenceCollator(tokenizer.pad_token_id)(list(examples))
    module.model.eval()
    ref_c, ref_r = module.reference_logps(batch)
    base_c, base_r = concatenated_logps(load_causal_lm(str(path)).eval(), batch)
    assert torch.allclose(ref_c, base_c, atol=1e-4) and torch.allclose(ref_r, base_r, atol=1e-4)
    with torch.no_grad():
        pol_c, _ = concatenated_logps(module.model, batch)
    assert not torch.allclose(pol_c, base_c, atol=1e-3)


def test_dpo_run_raises_reward_accuracy_and_margin(train_cfg):
    cfg = train_cfg(
        "objective=dpo",
        "languages=en",
        "data.max_examples_per_language=8",
        "data.batch_size=8",
        "trainer.max_steps=12",
        "objective.optimizer.lr=1e-3",
        "objective.beta=0.5",
    )
    metrics = train(cfg)
    assert metrics["loss_last"] < metrics["loss_first"]
    assert metrics["train/reward_margin"] > 0 and metrics["train/reward_accuracy"] >= 0.75
    out = Path(cfg.paths.models_dir) / cfg.output_name
    prov = read_provenance(out)
    assert prov["objective"] == "dpo" and prov["reference"]["kind"] == "precomputed"
    assert (out / "model.safetensors").is_file()


def test_identical_pair_is_rejected(train_cfg, tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(
        json.dumps({"language": "en", "prompt": "p", "chosen": "same", "rejected": "same"}) + "\n"
    )
    cfg = train_cfg(
        "objective=dpo",
        "languages=en",
        "data=mix_0pct_safety",
        "data.general.source=path",
        f"data.general.path={bad}",
    )
    with pytest.raises(
        MixmergeError, match=r"pairs.jsonl:1: 'chosen' and 'rejected' are identical"
    ):
        train(cfg)


def test_init_from_must_be_a_causal_lm(train_cfg, tmp_path):
    folder = tmp_path / "models" / "encoder"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(
        MixmergeError,
        match="model.init_from=.*encoder: model_type 'vit' is not a causal language model",
    ):
        train(train_cfg("objective=dpo", "model.init_from=encoder"))


def test_sft_then_dpo_through_the_cli(tmp_path, cache_dir):
    common = [
        "model=tiny_random",
        "logger=none",
        "trainer.precision=32-true",
        "languages=en",
        "data.max_length=256",
        "data.max_examples_per_language=6",
        "trainer.max_steps=2",
    ]
    sft = run_cli("mixmerge.train", *common, "hydra.run.dir=sft", cwd=tmp_path)
    assert sft.returncode == 0, sft.stderr[-2000:]
    dpo = run_cli(
        "mixmerge.train",
        *common,
        "objective=dpo",
        "model.init_from=tiny-random-sft-mix15-en",
        "output_name=chained-dpo",
        "hydra.run.dir=dpo",
        cwd=tmp_path,
    )
    assert dpo.returncode == 0, dpo.stderr[-2000:]
    prov = read_provenance(tmp_path / "outputs/models/chained-dpo")
    assert prov["parent"]["reference"] == "tiny-random-sft-mix15-en"
    assert prov["parent"]["provenance"]["objective"] == "sft"
    assert prov["reference"]["model"] == str(
        (tmp_path / "outputs/models/tiny-random-sft-mix15-en").resolve()
    )
    bad = run_cli(
        "mixmerge.train",
        *common,
        "objective=dpo",
        "objective.beta=0",
        "hydra.run.dir=bad",
        cwd=tmp_path,
    )
    assert (
        bad.returncode == 2
        and "mixmerge: error: objective.beta=0: expected a number > 0" in bad.stderr
    )
