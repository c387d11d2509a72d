"""Studies: every experiment composes and plans; a tiny study runs, and a rerun does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mixmerge.study.plan import plan_study
from tests.helpers import CONF, run_cli

# The experiment group also holds train-only overlays (e.g. gemma3_chat_adapter): a study is an
# experiment with a `study:` node.
EXPERIMENTS = sorted(
    p.stem
    for p in (CONF / "experiment").glob("*.yaml")
    if not p.stem.startswith("_") and "\nstudy:" in "\n" + p.read_text(encoding="utf-8")
)


def plan(experiment: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="study", overrides=[f"experiment={experiment}"])
        return cfg, plan_study(cfg.study)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_plans(experiment):
    cfg, stages = plan(experiment)
    assert cfg.study.scale in ("mini", "paper") and cfg.study.name.startswith(cfg.study.scale)
    names = [out for stage in stages if stage.command != "evaluate" for out in stage.outputs]
    assert len(names) == len(set(names)), "two jobs of a study would write the same model"
    prefix = "gemma3-270m-chat" if cfg.study.scale == "mini" else "aya23-8b"
    assert all(n.startswith((prefix, "merge-")) for n in names)


def test_objective_merge_study_plan():
    _, stages = plan("mini_objective_merge")
    sft, merges, evaluate = stages
    assert sft.outputs == [
        "gemma3-270m-chat-sft-mix0-all",
        "gemma3-270m-chat-sft-mix15-all",
        "gemma3-270m-chat-sft-mix100-all",
    ]
    assert len(merges.outputs) == 20 and "merge-objective-ties-w0.3" in merges.outputs
    assert evaluate.outputs == sft.outputs + merges.outputs
    assert "merge=linear,slerp,ties,dare_ties" in merges.sweep_args()
    assert "merge.safety_weight=0,0.3,0.5,0.7,1" in merges.sweep_args()
    # One W&B group per study, every stage logged (study.logger=wandb by default).
    for stage in (sft, merges, evaluate):
        assert stage.common[-2:] == ["logger=wandb", "group=mini_objective_merge"]


def test_an_evaluation_counts_as_done_only_under_the_stages_prompts_and_decoding(tmp_path):
    from mixmerge.study.plan import is_complete

    _, stages = plan("mini_objective_merge")
    evaluate = stages[-1]
    # The mini studies evaluate every bundled prompt with DRY: their expected digests differ from
    # the paper scale's (plain greedy, 512 tokens) and are what an evaluation now records.
    _, paper = plan("paper_objective_merge")
    assert set(evaluate.expect) == {"prompts_digest", "decoding_digest"}
    assert evaluate.expect["decoding_digest"] != paper[-1].expect["decoding_digest"]
    name = evaluate.outputs[0]
    folder = tmp_path / name
    folder.mkdir()
    assert not is_complete(evaluate, name, tmp_path)  # nothing yet
    results = folder / "eval_results.json"
    for content, done in [
        ("{not json", False),
        (json.dumps({"generation": {"max_new_tokens": 64}}), False),  # before the digests
        (json.dumps({"generation": {**evaluate.expect, "decoding_digest": "other"}}), False),
        (json.dumps({"generation": {**evaluate.expect, "max_new_tokens": 64}}), True),
    ]:
        results.write_text(content)
        assert is_complete(evaluate, name, tmp_path) is done


def test_study_group_reaches_every_entry_points_wandb_logger(tmp_path):
    from mixmerge.config import compose_config

    cfg, stages = plan("mini_objective_merge")
    for stage in stages:
        job = compose_config(stage.command, [*stage.common, *stage.jobs[0]], tmp_path)
        assert job.logger.wandb.group == "mini_objective_merge"
    report = compose_config("report", ["logger=wandb", "group=mini_objective_merge"], tmp_path)
    assert report.logger.wandb.group == "mini_objective_merge"
    alone = compose_config("evaluate", ["logger=wandb", "model_ref=base"], tmp_path)
    assert alone.logger.wandb.group == "evaluate"  # outside a study: the entry point


def test_a_study_can_log_nothing_or_keep_a_stage_logger():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="study", overrides=["experiment=mini_mixes", "study.logger=none"])
        for stage in plan_study(cfg.study):
            assert "logger=none" in stage.common and "group=mini_mixes" in stage.common
        study = cfg.study.copy()
        study.logger = "wandb"
        study.settings.train = ["logger=csv"]
        train = plan_study(study)[0]
        assert "logger=csv" in train.common and "logger=wandb" not in train.common


def test_dpo_stages_chain_onto_their_sft_models():
    _, stages = plan("mini_objective_merge_dpo")
    assert stages[1].outputs == [
        "gemma3-270m-chat-dpo-mix0-all",
        "gemma3-270m-chat-dpo-mix15-all",
        "gemma3-270m-chat-dpo-mix100-all",
    ]
    assert "model.init_from=gemma3-270m-chat-sft-${data.name}-all" in stages[1].common
    assert stages[2].outputs[0] == "merge-objective-dpo-linear-w0"


TINY_STUDY = """# @package _global_
study:
  name: tiny
  scale: mini
  model: tiny-random
  settings:
    train: [model=tiny_random, logger=none, trainer.precision=32-true, trainer.max_steps=2, data.max_length=256,
            languages=en, data.max_examples_per_language=6]
    merge: []
    evaluate: [model=tiny_random, max_prompts_per_language=2, generation.max_new_tokens=4, bootstrap.samples=10]
  seconds_per_job: {train: 10, merge: 5, evaluate: 10}
  stages:
    sft:
      command: train
      sweep: {data: [mix_0pct_safety, mix_100pct_safety]}
"""
MERGE_AND_EVAL = """    merges:
      command: merge
      overrides: [recipe.general=tiny-random-sft-mix0-en, recipe.safety=tiny-random-sft-mix100-en]
      sweep: {merge.safety_weight: [0.3, 0.7]}
    evaluate:
      command: evaluate
      models_from: [sft, merges]
"""


def write_study(root: Path, text: str) -> list[str]:
    (root / "studies/experiment").mkdir(parents=True, exist_ok=True)
    (root / "studies/experiment/tiny.yaml").write_text(text)
    return [
        "experiment=tiny",
        f"hydra.searchpath=[file://{root / 'studies'}]",
        "hydra.run.dir=study-run",
    ]


def test_study_runs_then_a_rerun_does_nothing(tmp_path, cache_dir):
    args = write_study(tmp_path, TINY_STUDY)
    first = run_cli("mixmerge.study", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "[1/1] sft: train × 2 jobs (0 already complete)" in first.stdout
    for name in ("tiny-random-sft-mix0-en", "tiny-random-sft-mix100-en"):
        assert (tmp_path / "outputs/models" / name / "mixmerge.json").is_file()
    stamp = (
        (tmp_path / "outputs/models/tiny-random-sft-mix0-en/model.safetensors").stat().st_mtime_ns
    )
    second = run_cli("mixmerge.study", *args, cwd=tmp_path)
    assert second.returncode == 0
    assert "[1/1] sft: all 2 outputs complete, skipped" in second.stdout
    assert (
        tmp_path / "outputs/models/tiny-random-sft-mix0-en/model.safetensors"
    ).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_tiny_study_end_to_end_with_report(tmp_path, cache_dir):
    args = write_study(tmp_path, TINY_STUDY + MERGE_AND_EVAL)
    result = run_cli("mixmerge.study", *args, cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    models = tmp_path / "outputs/models"
    for name in ("merge-objective-linear-w0.3", "merge-objective-linear-w0.7"):
        assert (models / name / "mixmerge.json").is_file()
    for name in ("tiny-random-sft-mix0-en", "merge-objective-linear-w0.3"):
        results = json.loads((models / name / "eval_results.json").read_text())
        assert "average" in results
    report = run_cli("mixmerge.report", "hydra.run.dir=report-run", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert list((tmp_path / "outputs/report").rglob("*.png"))


def test_the_time_left_ignores_jobs_that_were_already_complete():
    from mixmerge.study.run import time_left

    # 15 evaluations, the first 4 already done (skipped in seconds): 2 jobs ran in 240 s.
    pending = [False] * 4 + [True] * 11
    assert time_left(240.0, pending, 6, fallback=115.0) == 120.0 * 9
    # Before any job has run, the study's estimate per job is used.
    assert time_left(3.0, pending, 4, fallback=115.0) == 115.0 * 11
    assert time_left(999.0, pending, 15, fallback=115.0) == 0.0
