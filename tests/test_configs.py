"""Every config file composes, resolves, and its `_target_` nodes instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mixmerge.config import compose_config, resolved_config
from tests.helpers import CONF

# Each primary config with the overrides its mandatory keys need.
PRIMARY = {
    "train": [],
    "merge": [],
    "evaluate": ["model_ref=base"],
    "report": [],
    "study": ["experiment=mini_mixes"],
    "search": [],
    "judge_validate": [],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def group_overrides(primary: str) -> list[str]:
    """`group=option` for every option of every group the primary config's defaults list names."""
    defaults = OmegaConf.load(CONF / f"{primary}.yaml").defaults
    groups = [next(iter(d)) for d in defaults if isinstance(d, (DictConfig, dict))]
    out = []
    for group in groups:
        name = group.replace("optional ", "")
        if name in ("hydra",) or not (CONF / name).is_dir():
            continue
        opts = [opt for opt in options(name) if not opt.startswith("_")]
        if primary == "study" and name == "experiment":  # train-only overlays are not studies
            opts = [o for o in opts if "\nstudy:" in "\n" + (CONF / name / f"{o}.yaml").read_text()]
        out += [f"{name}={opt}" for opt in opts]
    return out


def defaults_groups(primary: str) -> list[str]:
    """The config groups a primary config's defaults list names (`optional` stripped)."""
    defaults = OmegaConf.load(CONF / f"{primary}.yaml").defaults
    names = [next(iter(d)) if not isinstance(d, str) else d for d in defaults]
    return [n.replace("optional ", "") for n in names if n != "_self_"]


def test_primary_configs_list_every_group():
    """Every group folder under conf/ is used by some entry point, and every group a defaults
    list names exists (except `local`, the user's own untracked overrides)."""
    named = {primary: defaults_groups(primary) for primary in PRIMARY}
    folders = {p.name for p in CONF.iterdir() if p.is_dir()}
    unused = folders - {group for groups in named.values() for group in groups}
    assert not unused, f"config groups no primary config names: {sorted(unused)}"
    for primary, groups in named.items():
        missing = set(groups) - folders - {"local"}
        assert not missing, f"{primary}.yaml names groups with no folder: {sorted(missing)}"
        assert {"paths", "hydra"} <= set(groups), primary


@pytest.mark.parametrize(
    ("primary", "override"), [(p, o) for p in PRIMARY for o in ["", *group_overrides(p)]]
)
def test_every_option_of_every_primary_config_composes(tmp_path: Path, primary: str, override: str):
    cfg = compose_config(primary, [*PRIMARY[primary], *([override] if override else [])], tmp_path)
    resolved_config(cfg)  # every interpolation resolves
    for group in ("callbacks", "logger"):
        for node in (cfg.get(group) or {}).values():
            instantiate(node)


@pytest.mark.parametrize("override", group_overrides("train"))
def test_every_train_option_instantiates(tmp_path: Path, override: str):
    cfg = compose_config("train", [override], tmp_path)
    instantiate(cfg.objective.optimizer)
    instantiate(cfg.objective.scheduler)
    if cfg.peft.config:
        instantiate(cfg.peft.config)
    assert cfg.data.safety_ratio is not None and 0 <= cfg.data.safety_ratio <= 1


def test_describe_precision_says_why_a_cpu_trains_in_fp32(monkeypatch):
    """The run's log names the precision and, on a CPU, whether bf16 is native there: the same
    recipe is several times slower on a CPU without AVX512-BF16 or AMX (measured, docs)."""
    import torch

    from mixmerge import config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: False)
    assert config.auto_precision() == "32-true"
    slow = config.describe_precision(config.auto_precision())
    assert slow.startswith("32-true (") and "no native bf16" in slow
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: True)
    assert config.auto_precision() == "bf16-mixed"
    fast = config.describe_precision(config.auto_precision())
    assert fast.startswith("bf16-mixed (") and "has native bf16" in fast
    assert config.describe_precision("16-mixed") == "16-mixed"
