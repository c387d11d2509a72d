"""mergekit's further methods (della, breadcrumbs_ties, dare_linear, model_stock, nuslerp) on tiny
random models, and the method registry agreeing with conf/merge/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from mixmerge.config import compose_config
from mixmerge.errors import MixmergeError
from mixmerge.merging.methods import METHODS
from mixmerge.merging.pipeline import merge
from mixmerge.provenance import read_provenance
from tests.helpers import CONF
from tests.merge_helpers import make_base, make_finetuned, tensors

NEW = ["della", "breadcrumbs_ties", "dare_linear", "model_stock", "nuslerp"]


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family")
    base = make_base(root / "base")
    return {
        "base": base,
        "general": make_finetuned(base, root / "general", seed=1),
        "safety": make_finetuned(base, root / "safety", seed=2),
    }


def merged(root: Path, family: dict[str, Path], *overrides: str) -> dict[str, torch.Tensor]:
    cfg = compose_config(
        "merge",
        [f"recipe.general={family['general']}", f"recipe.safety={family['safety']}", *overrides],
        root,
    )
    merge(cfg)
    return tensors(Path(cfg.paths.models_dir) / cfg.output_name)


def differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("method", NEW)
def test_new_method_merges_two_models_into_a_loadable_finite_model(tmp_path, family, method):
    out = merged(tmp_path, family, f"merge={method}", "merge.safety_weight=0.3")
    folder = next((tmp_path / "models").iterdir())
    assert read_provenance(folder)["mergekit_config"]["merge_method"] == method
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert torch.isfinite(model(torch.tensor([[1, 2, 3, 4]])).logits).all()
    assert all(torch.isfinite(t).all() for t in out.values())
    for parent in ("general", "safety", "base"):
        assert differs(out, tensors(family[parent])), parent


@pytest.mark.parametrize("method", NEW)
def test_the_safety_weight_changes_the_merge_exactly_where_it_applies(tmp_path, family, method):
    low = merged(tmp_path / "low", family, f"merge={method}", "merge.safety_weight=0.2")
    high = merged(tmp_path / "high", family, f"merge={method}", "merge.safety_weight=0.8")
    # model_stock takes no weights: the ratio comes from the task vectors' angle alone.
    assert differs(low, high) == METHODS[method].has_safety_weight


@pytest.mark.parametrize(("weight", "parent"), [(0, "general"), (1, "safety")])
def test_nuslerp_ends_are_the_parents(tmp_path, family, weight, parent):
    out = merged(tmp_path, family, "merge=nuslerp", f"merge.safety_weight={weight}")
    want = tensors(family[parent])
    for name in want:
        torch.testing.assert_close(out[name], want[name], atol=1e-5, rtol=0, msg=name)


def test_nuslerp_on_task_vectors_uses_the_common_base(tmp_path, family):
    plain = merged(tmp_path / "a", family, "merge=nuslerp", "merge.safety_weight=0.5")
    tv = merged(tmp_path / "b", family, "merge=nuslerp", "merge.safety_weight=0.5",
                "merge.task_vectors=true")  # fmt: skip
    assert differs(plain, tv)
    prov = read_provenance(next((tmp_path / "b" / "models").iterdir()))
    assert prov["mergekit_config"]["base_model"] == str(family["base"])
    assert "task_vectors" not in prov["mergekit_config"].get("parameters", {})


def test_a_gradient_reaches_the_new_task_vector_methods(tmp_path, family):
    flat = merged(tmp_path / "a", family, "merge=dare_linear", "merge.safety_weight=0.5")
    grad = merged(tmp_path / "b", family, "merge=dare_linear", "merge.safety_weight=[0,1]")
    assert differs(flat, grad)


BAD = [
    (["merge=della", "merge.epsilon=0.6"], "merge.epsilon=0.6: density ± epsilon must lie in (0, 1)"),
    (["merge=ties", "+merge.epsilon=0.1"], "merge.epsilon: not a parameter of merge=ties"),
    (["merge=model_stock", "+merge.density=0.5"], "merge.density: not a parameter of merge=model_stock"),
    (["merge.name=bogus"], "merge.name=bogus: expected one of linear, slerp"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[m[:30] for _, m in BAD])
def test_bad_method_parameters_are_one_line_and_write_nothing(tmp_path, family, overrides, message):
    cfg = compose_config(
        "merge",
        [f"recipe.general={family['general']}", f"recipe.safety={family['safety']}", *overrides],
        tmp_path,
    )
    with pytest.raises(MixmergeError, match=re.escape(message)):
        merge(cfg)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_registry_and_conf_merge_agree(tmp_path, name):
    """Every registered method has a config file with the registry's defaults, and vice versa."""
    cfg = OmegaConf.to_container(
        compose_config("merge", [f"merge={name}"], tmp_path).merge, resolve=True
    )
    spec = METHODS[name]
    assert cfg["name"] == name
    for param in spec.params:
        if param.name in ("int8_mask",):
            continue  # mergekit's default (false) unless set
        assert cfg[param.name] == param.default, param.name
        if param.searchable:
            assert param.low <= param.default <= param.high, param.name


def test_every_config_file_is_a_registered_method():
    files = {p.stem for p in (CONF / "merge").glob("*.yaml") if not p.stem.startswith("_")}
    assert files == set(METHODS)
