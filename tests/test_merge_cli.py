"""The merge command as a user runs it: a multirun grid, its errors, and the YAML rerun by mergekit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixmerge.provenance import read_provenance
from tests.helpers import run_cli
from tests.merge_helpers import make_base, make_finetuned, tensors


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-family")
    base = make_base(root / "base")
    return {
        "base": base,
        "general": make_finetuned(base, root / "general", seed=1),
        "safety": make_finetuned(base, root / "safety", seed=2),
    }


def recipe(family: dict[str, Path]) -> list[str]:
    return [f"recipe.general={family['general']}", f"recipe.safety={family['safety']}"]


def test_multirun_2x2_writes_four_named_models(tmp_path, family):
    result = run_cli(
        "mixmerge.merge",
        "-m",
        "merge=linear,ties",
        "merge.safety_weight=0.3,0.7",
        *recipe(family),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    models = tmp_path / "outputs/models"
    names = sorted(p.name for p in models.iterdir())
    assert names == [
        "merge-objective-linear-w0.3",
        "merge-objective-linear-w0.7",
        "merge-objective-ties-w0.3",
        "merge-objective-ties-w0.7",
    ]
    for name in names:
        prov = read_provenance(models / name)
        assert prov["name"] == name and prov["base"]["path"] == str(family["base"])
        assert (models / name / "mergekit_config.yml").is_file()
    assert len(list((tmp_path / "multirun/merge").glob("*/[0-3]/.hydra"))) == 4
    assert result.stdout.count("Merged model written to") == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{recipe}", "merge.safety_weight=1.5"],
            "merge.safety_weight=1.5: expected a number in [0, 1]",
        ),
        (
            ["merge=slerp", "recipe=language"],
            "recipe.models[0]=gemma3-270m-chat-sft-mix15-en: no such model",
        ),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, family, args, message):
    args = [a for arg in args for a in (recipe(family) if arg == "{recipe}" else [arg])]
    result = run_cli("mixmerge.merge", *args, "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("mixmerge: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs/models").exists()


def test_written_yaml_reruns_in_mergekit_with_identical_tensors(tmp_path, family):
    result = run_cli(
        "mixmerge.merge",
        "merge=dare_ties",
        "merge.safety_weight=[0.2,0.6]",
        "seed=3",
        *recipe(family),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ours = tmp_path / "outputs/models/merge-objective-dare_ties-w0.2-0.6"
    # What the YAML's header tells a user to run, with mergekit's own command.
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "mergekit.scripts.run_yaml",
            str(ours / "mergekit_config.yml"),
            str(tmp_path / "rerun"),
            "--random-seed",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    mine, theirs = tensors(ours), tensors(tmp_path / "rerun")
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_help_lists_the_groups(tmp_path):
    result = run_cli("mixmerge.merge", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("dare_ties", "task_arithmetic", "language_en_fr_es", "merge_grid"):
        assert option in result.stdout
