"""Names that become paths stay inside their folders, for every entry point (issue 17, item 1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mixmerge.config import compose_config
from mixmerge.errors import EXIT_CODE, MixmergeError, report_errors
from mixmerge.names import check_plain_name, output_path, reference_path
from tests.helpers import CONF, run_cli

BAD_NAMES = ["../../escaped", "../sibling", "a/b", "/tmp/mixmerge-absolute", "..", ".", "", " x"]


def tree(root: Path) -> set[Path]:
    """Every path under `root` (what a run must not add to)."""
    return set(root.rglob("*")) if root.exists() else set()


def entry_error(
    fn: Callable[..., Any], cfg: Any, capsys: pytest.CaptureFixture
) -> tuple[int, list[str]]:
    """Run an entry function as its CLI wraps it: the exit code and the `mixmerge: error:` lines."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        report_errors(fn)(cfg)
    err = capsys.readouterr().err
    return int(exc.value.code), [
        line for line in err.splitlines() if line.startswith("mixmerge: error:")
    ]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_output_path_refuses_anything_but_a_plain_name(tmp_path, name):
    with pytest.raises(MixmergeError, match=rf"^output_name={name}: "):
        output_path(tmp_path / "models", name)
    assert not (tmp_path / "models").exists()


def test_output_path_refuses_a_symlink_that_leaves_the_root(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "models" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(MixmergeError, match="outside"):
        output_path(tmp_path / "models", "link")
    assert output_path(tmp_path / "models", "merge-x-w0.3") == tmp_path / "models" / "merge-x-w0.3"


def test_references_are_names_under_the_root_or_paths_as_written(tmp_path):
    assert reference_path("tiny-sft", tmp_path) == tmp_path / "tiny-sft"
    assert reference_path("./tiny-sft", tmp_path) == Path("./tiny-sft")
    assert reference_path("/abs/model", tmp_path) == Path("/abs/model")
    assert reference_path("..", tmp_path) == Path("..")
    assert (
        check_plain_name("smollm2-135m-sft-mix15-all", "output_name")
        == "smollm2-135m-sft-mix15-all"
    )


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/mixmerge-abs-train", ""])
def test_train_output_name_stays_inside(tmp_path, cache_dir, capsys, name):
    from mixmerge.training.pipeline import train

    cfg = compose_config(
        "train", ["model=tiny_random", "logger=none", f"output_name='{name}'"], tmp_path
    )
    before = tree(tmp_path.parent)
    code, errors = entry_error(train, cfg, capsys)
    assert code == EXIT_CODE and len(errors) == 1
    assert errors[0].startswith(f"mixmerge: error: output_name={name}: ")
    assert tree(tmp_path.parent) == before and not Path("/tmp/mixmerge-abs-train").exists()


def test_train_cli_output_name_escape(tmp_path, cache_dir):
    """The hand-found case of issue 17, through the real CLI: exit 2, one line, nothing written."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    result = run_cli(
        "mixmerge.train", "model=tiny_random", "logger=none", "trainer.max_steps=1",
        "output_name=../../escaped", "hydra.run.dir=run", cwd=work,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("mixmerge: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("mixmerge: error: output_name=../../escaped: expected a plain name")
    assert not (tmp_path / "a" / "escaped").exists() and not (work / "outputs").exists()


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/mixmerge-abs-merge", "x/y"])
def test_merge_output_name_stays_inside(tmp_path, capsys, name):
    from mixmerge.merging.pipeline import merge

    cfg = compose_config(
        "merge", [f"output_name='{name}'", "recipe.general=a", "recipe.safety=b"], tmp_path
    )
    before = tree(tmp_path.parent)
    code, errors = entry_error(merge, cfg, capsys)
    assert code == EXIT_CODE and len(errors) == 1
    assert errors[0].startswith(f"mixmerge: error: output_name={name}: ")
    assert tree(tmp_path.parent) == before and not Path("/tmp/mixmerge-abs-merge").exists()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["recipe.general=stray", "recipe.safety=other"], "recipe.general"),
        (["recipe=language", "recipe.models=[stray,other]"], "recipe.models[0]"),
    ],
)
def test_merge_recipe_names_are_looked_up_under_models_dir_only(
    tmp_path, capsys, monkeypatch, overrides, key
):
    """A plain name never picks up a folder of that name in the working directory."""
    from mixmerge.merging.pipeline import merge

    monkeypatch.chdir(tmp_path)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "config.json").write_text("{}")
    cfg = compose_config("merge", overrides, tmp_path)
    code, errors = entry_error(merge, cfg, capsys)
    assert code == EXIT_CODE and len(errors) == 1
    assert (
        f"{key}=stray: no such model (looked for a model named stray in {tmp_path / 'models'}"
        in errors[0]
    )


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model_ref=../../nowhere", "model_ref"),
        ("baseline=../up", "baseline"),
        ("model_ref=''", "model_ref"),
    ],
)
def test_evaluate_references(tmp_path, cache_dir, capsys, override, key):
    from mixmerge.evaluation.run import evaluate

    extra = [] if override.startswith("model_ref") else ["model_ref=base"]
    cfg = compose_config("evaluate", ["model=tiny_random", override, *extra], tmp_path)
    before = tree(tmp_path)
    code, errors = entry_error(evaluate, cfg, capsys)
    assert (
        code == EXIT_CODE and len(errors) == 1 and errors[0].startswith(f"mixmerge: error: {key}")
    )
    assert {p for p in tree(tmp_path) - before if "models" in p.parts} == set()


def test_init_from_dotdot_is_a_path_not_a_name(tmp_path, cache_dir, capsys):
    from mixmerge.training.pipeline import train

    cfg = compose_config(
        "train", ["model=tiny_random", "logger=none", "model.init_from=.."], tmp_path
    )
    code, errors = entry_error(train, cfg, capsys)
    assert code == EXIT_CODE and len(errors) == 1
    assert "model.init_from=..: " in errors[0] and "no config.json" in errors[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.name=../../x", "study.name=../../x: expected a plain name"),
        (
            "study.settings.merge=['output_name=../evil']",
            "study.stages.merges: output_name=../evil: expected a plain name",
        ),
    ],
)
def test_study_names_stay_inside(tmp_path, capsys, monkeypatch, override, message):
    """The study plans (composing every job's real config) before any stage runs or writes."""
    from mixmerge.study.plan import plan_study

    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="study", overrides=["experiment=mini_objective_merge", override])
        code, errors = entry_error(plan_study, cfg.study, capsys)
    assert code == EXIT_CODE and len(errors) == 1 and message in errors[0], errors
    assert tree(tmp_path) == set()


def test_convert_output_name_stays_inside(tmp_path):
    """`mixmerge.convert --output-name` is refused before the checkpoint is read."""
    from mixmerge.convert import export_checkpoint

    ckpt = tmp_path / "step=1.ckpt"
    ckpt.write_bytes(b"never read")
    with pytest.raises(MixmergeError, match=r"^--output-name=../x: expected a plain name"):
        export_checkpoint(ckpt, "../x", tmp_path / "models")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step=1.ckpt"]
