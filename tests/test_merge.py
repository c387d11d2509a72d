"""Merging in process on tiny random models with the real mergekit: maths, outputs, provenance, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict
from transformers import AutoModelForCausalLM, AutoTokenizer, MistralConfig, MistralForCausalLM

from mixmerge.config import compose_config, resolved_config
from mixmerge.errors import MixmergeError
from mixmerge.fingerprints import model_fingerprint
from mixmerge.merging.methods import METHODS
from mixmerge.merging.pipeline import MERGEKIT_CONFIG_FILE, merge
from mixmerge.provenance import read_provenance
from tests.helpers import CONF
from tests.merge_helpers import ARCH, make_base, make_finetuned, tensors

LANGS = ["en", "fr", "es", "hi", "ar", "ru"]


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base, its general/safety/monolingual fine-tunes, and models that must not merge with them."""
    root = tmp_path_factory.mktemp("family")
    base = make_base(root / "base")
    models = {
        "base": base,
        "general": make_finetuned(base, root / "general", seed=1),
        "safety": make_finetuned(base, root / "safety", seed=2),
        **{
            lang: make_finetuned(base, root / f"mono-{lang}", seed=10 + i)
            for i, lang in enumerate(LANGS)
        },
        "general_noprov": make_finetuned(base, root / "general-noprov", seed=1, provenance=False),
        "safety_noprov": make_finetuned(base, root / "safety-noprov", seed=2, provenance=False),
    }
    other_base = make_base(root / "other-base", seed=5)
    models["other_family"] = make_finetuned(other_base, root / "other-family", seed=3)
    narrow_base = make_base(root / "narrow-base", intermediate_size=96)
    models["narrow"] = make_finetuned(narrow_base, root / "narrow", seed=4)

    # Same shapes, another architecture.
    mistral = root / "mistral"
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = MistralConfig(vocab_size=len(tokenizer), **{k: v for k, v in ARCH.items()})
    MistralForCausalLM(config).save_pretrained(mistral)
    tokenizer.save_pretrained(mistral)
    models["mistral"] = mistral

    # One more token in the vocabulary (and the embeddings resized to it).
    bigvocab = root / "bigvocab"
    model = AutoModelForCausalLM.from_pretrained(models["safety"])
    tokenizer = AutoTokenizer.from_pretrained(models["safety"])
    tokenizer.add_tokens(["<extra_token>"])
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(bigvocab)
    tokenizer.save_pretrained(bigvocab)
    shutil.copy(models["safety"] / "mixmerge.json", bigvocab / "mixmerge.json")
    models["bigvocab"] = bigvocab

    # The same number of tokens, one of them different: only the tokenizers tell.
    renamed = root / "renamed"
    shutil.copytree(models["safety"], renamed)
    spec = json.loads((renamed / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    token = next(t for t in vocab if t.isalpha())
    vocab[token + "_renamed"] = vocab.pop(token)
    (renamed / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    models["renamed"] = renamed
    return models


def merge_cfg(root: Path, family: dict[str, Path], *overrides: str) -> DictConfig:
    """The real merge config, the objective recipe pointing at the tiny general/safety models."""
    recipe = [f"recipe.general={family['general']}", f"recipe.safety={family['safety']}"]
    if any(o.startswith("recipe=") for o in overrides):
        recipe = []
    return compose_config("merge", [*recipe, *[o.format(**family) for o in overrides]], root)


def out_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.models_dir) / cfg.output_name


def assert_all_close(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float = 1e-6
) -> None:
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=atol, rtol=0, msg=name)


def test_linear_is_the_weighted_average_tensor_by_tensor(tmp_path, family):
    cfg = merge_cfg(tmp_path, family, "merge=linear", "merge.safety_weight=0.3")
    result = merge(cfg)
    out = out_dir(cfg)
    assert out.name == "merge-objective-linear-w0.3" and result["output_dir"] == str(out)
    general, safety = tensors(family["general"]), tensors(family["safety"])
    assert_all_close(tensors(out), {k: 0.3 * safety[k] + 0.7 * general[k] for k in general})

    prov = read_provenance(out)
    assert prov["kind"] == "merge" and prov["method"] == "linear" and prov["safety_weight"] == 0.3
    assert [p["path"] for p in prov["parents"]] == [str(family["general"]), str(family["safety"])]
    assert prov["parents"][0]["provenance"]["kind"] == "train"
    assert prov["base"]["path"] == str(family["base"])  # found through the parents' provenance
    assert [m["weight"] for m in prov["recipe"]["models"]] == [0.7, 0.3]
    assert prov["mergekit_version"] == "0.1.5" and prov["evaluate_after"] is False
    assert prov["mergekit_config"]["merge_method"] == "linear"
    assert prov["config"]["output_name"] == out.name
    assert (out / MERGEKIT_CONFIG_FILE).read_text().startswith("# Written by mixmerge")
    assert AutoTokenizer.from_pretrained(out).chat_template
    assert not list(out.parent.glob(".tmp-*"))


@pytest.mark.parametrize("method", ["linear", "slerp"])
@pytest.mark.parametrize(("weight", "parent"), [(0, "general"), (1, "safety")])
def test_weight_0_and_1_give_back_the_parents(tmp_path, family, method, weight, parent):
    cfg = merge_cfg(tmp_path, family, f"merge={method}", f"merge.safety_weight={weight}")
    merge(cfg)
    assert out_dir(cfg).name == f"merge-objective-{method}-w{weight}"
    assert_all_close(tensors(out_dir(cfg)), tensors(family[parent]))
    # Bit for bit, in a file of mergekit's own: by content it is the parent, so an evaluation
    # reuses the parent's generations instead of generating them again.
    assert model_fingerprint(out_dir(cfg)) == model_fingerprint(family[parent])


@pytest.mark.parametrize(
    ("method", "weight", "name"),
    [
        ("linear", "0.3", "merge-objective-linear-w0.3"),
        ("slerp", "[0,0.5,1]", "merge-objective-slerp-w0-0.5-1"),
        ("ties", "[0,0.5,1]", "merge-objective-ties-w0-0.5-1"),
        ("dare_ties", "0.7", "merge-objective-dare_ties-w0.7"),
        ("task_arithmetic", "[0.2,0.8]", "merge-objective-task_arithmetic-w0.2-0.8"),
    ],
)
def test_every_method_reloads_with_finite_logits(tmp_path, family, method, weight, name):
    cfg = merge_cfg(tmp_path, family, f"merge={method}", f"merge.safety_weight={weight}")
    merge(cfg)
    out = out_dir(cfg)
    assert out.name == name
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hola, ¿qué tal?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    assert torch.isfinite(model(ids).logits).all()
    merged = tensors(out)
    for parent in ("general", "safety"):
        assert any(not torch.equal(merged[k], v) for k, v in tensors(family[parent]).items())


def test_a_list_is_a_per_layer_gradient(tmp_path, family):
    # 2 layers: t runs 0 (layer 0) → 1 (layer 1). Tensors outside the layers (embeddings, final
    # norm, LM head) take the list's first value: that is how mergekit reads gradients.
    cfg = merge_cfg(tmp_path, family, "merge=slerp", "merge.safety_weight=[0,1]")
    merge(cfg)
    merged, general, safety = (
        tensors(out_dir(cfg)),
        tensors(family["general"]),
        tensors(family["safety"]),
    )
    for name in merged:
        want = safety if name.startswith("model.layers.1.") else general
        torch.testing.assert_close(merged[name], want[name], atol=1e-6, rtol=0, msg=name)


def test_task_vector_weights_follow_the_safety_weight(tmp_path, family):
    # Task arithmetic with lambda 1 and no normalization: base + (1−w)(general − base) + w(safety − base).
    cfg = merge_cfg(tmp_path, family, "merge=task_arithmetic", "merge.safety_weight=0.3")
    merge(cfg)
    base, general, safety = (tensors(family[k]) for k in ("base", "general", "safety"))
    want = {k: base[k] + 0.7 * (general[k] - base[k]) + 0.3 * (safety[k] - base[k]) for k in base}
    assert_all_close(tensors(out_dir(cfg)), want, atol=1e-5)


def test_dare_with_a_fixed_seed_is_reproducible(tmp_path, family):
    def run(root: Path, seed: int) -> dict[str, torch.Tensor]:
        cfg = merge_cfg(
            root, family, "merge=dare_ties", "merge.safety_weight=0.5", f"merge.seed={seed}"
        )
        merge(cfg)
        assert read_provenance(out_dir(cfg))["parameters"]["seed"] == seed
        return tensors(out_dir(cfg))

    first, again, other = run(tmp_path / "a", 7), run(tmp_path / "b", 7), run(tmp_path / "c", 8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_language_recipe_merges_six_models(tmp_path, family):
    models = "recipe.models=[" + ",".join(str(family[lang]) for lang in LANGS) + "]"
    cfg = merge_cfg(tmp_path / "linear", family, "recipe=language", models, "merge=linear")
    merge(cfg)
    assert out_dir(cfg).name == "merge-language-linear"
    mono = [tensors(family[lang]) for lang in LANGS]
    assert_all_close(tensors(out_dir(cfg)), {k: sum(m[k] for m in mono) / 6 for k in mono[0]})

    cfg = merge_cfg(tmp_path / "ties", family, "recipe=language", models, "merge=ties")
    merge(cfg)
    prov = read_provenance(out_dir(cfg))
    assert len(prov["parents"]) == 6 and prov["safety_weight"] is None
    assert prov["base"]["path"] == str(family["base"])
    assert prov["mergekit_config"]["base_model"] == str(family["base"])
    assert [m["parameters"]["weight"] for m in prov["mergekit_config"]["models"]] == pytest.approx(
        [1 / 6] * 6
    )
    model = AutoModelForCausalLM.from_pretrained(out_dir(cfg))
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_default_recipe_names_the_trained_models(tmp_path, family):
    # The defaults are names under paths.models_dir, as `mixmerge.train` writes them.
    cfg = compose_config("merge", ["merge=ties", "merge.safety_weight=0.7"], tmp_path)
    models_dir = Path(cfg.paths.models_dir)
    shutil.copytree(family["general"], models_dir / cfg.recipe.general)
    shutil.copytree(family["safety"], models_dir / cfg.recipe.safety)
    merge(cfg)
    assert (models_dir / "merge-objective-ties-w0.7" / "mixmerge.json").is_file()
    assert (
        read_provenance(models_dir / "merge-objective-ties-w0.7")["parents"][1]["reference"]
        == "gemma3-270m-chat-sft-mix100-all"
    )


def test_vocabulary_mismatch_merges_with_a_tokenizer_source(tmp_path, family):
    cfg = merge_cfg(
        tmp_path, family, "merge=ties", "recipe.safety={bigvocab}", "merge.tokenizer_source=union"
    )
    merge(cfg)
    tokenizer = AutoTokenizer.from_pretrained(out_dir(cfg))
    assert "<extra_token>" in tokenizer.get_vocab()
    model = AutoModelForCausalLM.from_pretrained(out_dir(cfg))
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)


def test_finished_merge_is_kept_unless_overwrite(tmp_path, family):
    cfg = merge_cfg(tmp_path, family, "merge.safety_weight=0.5")
    merge(cfg)
    with pytest.raises(MixmergeError, match="already holds a finished model"):
        merge(cfg)
    with open_dict(cfg):
        cfg.overwrite = True
    merge(cfg)
    assert not list(out_dir(cfg).parent.glob(".tmp-*")) and not list(
        out_dir(cfg).parent.glob(".old-*")
    )


def test_csv_logger_records_the_merge(tmp_path, family):
    cfg = merge_cfg(tmp_path, family, "logger=csv")
    merge(cfg)
    metrics = list((tmp_path / "run").rglob("metrics.csv"))
    assert metrics and "merge/merge_seconds" in metrics[0].read_text()


BAD = [
    (["recipe.safety=/no/such/model"], "recipe.safety=/no/such/model: no such model"),
    (
        ["recipe.safety={mistral}"],
        "architecture MistralForCausalLM (mistral) differs from recipe.general=",
    ),
    (
        ["recipe.safety={narrow}"],
        "tensor model.layers.0.mlp.down_proj.weight has shape [64, 96] but [64, 128]",
    ),
    (["recipe.safety={bigvocab}"], "vocabulary differs from recipe.general="),
    (["merge.safety_weight=1.5"], "merge.safety_weight=1.5: expected a number in [0, 1]"),
    (["merge.safety_weight=-0.1"], "merge.safety_weight=-0.1: expected a number in [0, 1]"),
    (["merge.safety_weight=abc"], "merge.safety_weight=abc: expected a number in [0, 1]"),
    (
        ["merge=ties", "merge.safety_weight=[0,1.2]"],
        "merge.safety_weight=[0, 1.2]: expected a number in [0, 1] or a list",
    ),
    (
        ["merge=linear", "merge.safety_weight=[0,0.5,1]"],
        "merge.safety_weight=[0, 0.5, 1]: merge=linear takes one number, not a per-layer gradient",
    ),
    (
        ["recipe=language", "merge=slerp", "recipe.models=[{en},{fr},{es}]"],
        "merge=slerp: merges exactly 2 models; recipe=language names 3",
    ),
    (
        ["merge=ties", "recipe.general={general_noprov}", "recipe.safety={safety_noprov}"],
        "merge=ties: needs the base model the parents were fine-tuned from",
    ),
    (
        ["merge=dare_ties", "recipe.safety={other_family}"],
        "the parents were fine-tuned from different models",
    ),
    (["merge=ties", "recipe.base=/no/base"], "recipe.base=/no/base: no such model"),
    (["recipe.safety={general}"], "recipe.safety={general}: the same model as recipe.general"),
    (
        ["merge=task_arithmetic", "recipe.base={general}"],
        "recipe.base={general}: the same model as recipe.general",
    ),
    (["+mergekit_options.bogus=1"], "mergekit_options.bogus: not a mergekit option"),
    (
        ["recipe.safety={renamed}"],
        "recipe.safety={renamed}: vocabulary differs from recipe.general",
    ),
    (
        ["recipe.safety={bigvocab}", "merge.tokenizer_source=base"],
        "merge.tokenizer_source=base: merge=linear has no base model",
    ),
    (
        ["recipe=language", "recipe.models=[{en},{fr}]", "recipe.weights=[1]"],
        "recipe.weights=[1]: expected null (equal) or one weight per model (2)",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, family, overrides, message):
    cfg = merge_cfg(tmp_path, family, *overrides)
    with pytest.raises(MixmergeError, match=re.escape(message.format(**family))):
        merge(cfg)
    models_dir = Path(cfg.paths.models_dir)
    assert not models_dir.exists() or not any(models_dir.iterdir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in ("merge", "recipe", "sweep") for o in options(g)]
)
def test_every_merge_option_composes_and_resolves(tmp_path, override):
    cfg = compose_config("merge", [override], tmp_path)
    resolved = resolved_config(cfg)
    assert resolved["output_name"].startswith(f"merge-{cfg.recipe.name}-{cfg.merge.name}")
    assert cfg.merge.name in METHODS


def test_the_grid_sweep_names_twenty_distinct_models(tmp_path):
    cfg = compose_config("merge", ["sweep=merge_grid"], tmp_path)
    params = cfg.hydra.sweeper.params
    methods, weights = params["merge"].split(","), params["merge.safety_weight"].split(",")
    assert len(methods) * len(weights) == 20
    names = {
        compose_config("merge", [f"merge={m}", f"merge.safety_weight={w}"], tmp_path).output_name
        for m in methods
        for w in weights
    }
    assert (
        len(names) == 20
        and "merge-objective-ties-w0.3" in names
        and "merge-objective-dare_ties-w1" in names
    )
    assert (
        compose_config("merge", ["recipe=language_en_fr_es"], tmp_path)
        .recipe.models[2]
        .endswith("mix15-es")
    )


def test_evaluate_after_writes_results_beside_the_merged_model(tmp_path, family):
    cfg = merge_cfg(
        tmp_path,
        family,
        "merge=linear",
        "merge.safety_weight=0.5",
        "evaluate_after=true",
        'evaluate_overrides=["languages=en","max_prompts_per_language=2","generation.max_new_tokens=4","bootstrap.samples=10"]',
    )
    summary = merge(cfg)
    results = json.loads((Path(summary["output_dir"]) / "eval_results.json").read_text())
    assert results["baseline"]["path"] == str(family["base"].resolve())
    assert set(results["languages"]) == {"en"}
    assert summary["evaluation"]["average"] == results["average"]
