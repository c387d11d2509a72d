"""The report on files the real commands wrote (slow): tiny SFT mixes, a Linear merge, DPO on the
merge, each evaluated, then `python -m mixmerge.report`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import run_cli

TRAIN = ["model=tiny_random", "logger=none", "callbacks=none", "trainer.precision=32-true",
         "trainer.max_steps=2", "trainer.enable_progress_bar=false", "data.max_length=256",
         "languages=en_fr_es", "data.max_examples_per_language=8"]  # fmt: skip
EVAL = ["model=tiny_random", "languages=en_fr_es", "max_prompts_per_language=2",
        "generation.max_new_tokens=8", "bootstrap.samples=20"]  # fmt: skip


def ok(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_report_from_real_train_merge_dpo_and_evaluate(tmp_path, cache_dir):
    for mix in ("0", "15", "100"):
        ok(run_cli("mixmerge.train", *TRAIN, f"data=mix_{mix}pct_safety", cwd=tmp_path))
    ok(run_cli("mixmerge.merge", "merge=linear", "merge.safety_weight=0.5",
               "recipe.general=tiny-random-sft-mix0-en_fr_es",
               "recipe.safety=tiny-random-sft-mix100-en_fr_es", cwd=tmp_path))  # fmt: skip
    ok(run_cli("mixmerge.train", *TRAIN, "objective=dpo", "data=mix_15pct_safety",
               "model.init_from=merge-objective-linear-w0.5", cwd=tmp_path))  # fmt: skip
    evaluated = [
        "tiny-random-sft-mix0-en_fr_es",
        "tiny-random-sft-mix15-en_fr_es",
        "merge-objective-linear-w0.5",
        "tiny-random-dpo-mix15-en_fr_es",
    ]
    for name in evaluated:
        ok(run_cli("mixmerge.evaluate", *EVAL, f"model_ref={name}", cwd=tmp_path))

    result = run_cli("mixmerge.report", "hydra.run.dir=run", cwd=tmp_path)
    ok(result)
    models = pd.read_csv(tmp_path / "run/models.csv").set_index("name")
    assert sorted(models.index) == sorted(evaluated)
    assert models.loc["merge-objective-linear-w0.5", "family"] == "objective_merge"
    dpo = models.loc["tiny-random-dpo-mix15-en_fr_es"]
    assert (dpo["family"], dpo["order"], dpo["method"]) == ("post_merge", "SFT→merge→DPO", "linear")
    for name in evaluated:
        results = json.loads((tmp_path / "outputs/models" / name / "eval_results.json").read_text())
        for key in ("harm_change_pct", "win_rate_pct"):
            expected = results["average"][key]
            got = models.loc[name, key]
            assert (pd.isna(got) and expected is None) or got == pytest.approx(expected)
    # The SFT rows are measured from the SFT 15% mix; the only DPO model has no DPO mix to compare.
    assert set(models[models["stage"] == "sft"]["reference"]) == {"tiny-random-sft-mix15-en_fr_es"}
    assert pd.isna(dpo["reference"])
    position = pd.read_csv(tmp_path / "run/merge_position.csv")
    assert list(position["method"].unique()) == ["linear"]
    assert set(position["name"].dropna()) == {
        "merge-objective-linear-w0.5",
        "tiny-random-dpo-mix15-en_fr_es",
    }
    text = (tmp_path / "outputs/report/latest/report.md").read_text()
    assert "tiny-random-sft-mix100-en_fr_es" in text  # trained, not evaluated: named as missing
    assert (tmp_path / "outputs/report/latest/pareto.png").stat().st_size > 10_000
    # Paired intervals from the judgements.jsonl each evaluation wrote beside its model.
    for name in evaluated:
        assert models.loc[name, "judgements_file"].endswith(f"{name}/judgements.jsonl")
    paired = pd.read_csv(tmp_path / "run/paired.csv")
    against_mix = paired[(paired["against"] == "tiny-random-sft-mix15-en_fr_es")]
    assert {"tiny-random-sft-mix0-en_fr_es", "merge-objective-linear-w0.5"} <= set(
        against_mix["name"]
    )
    assert set(against_mix["language"]) == {"average", "en", "fr", "es"}
    parents = pd.read_csv(tmp_path / "run/merge_parents.csv")
    assert list(parents["parent"]) == ["tiny-random-sft-mix0-en_fr_es"]  # mix100 not evaluated
    assert "no paired interval" not in text
