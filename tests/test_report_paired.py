"""Paired intervals in the report: the Δ columns against the 15% mix and a merge's parents carry
paired-bootstrap intervals from judgements.jsonl, significant ones are starred, one computed
sentence per table, error bars in the Pareto figure, and what happens without judgements."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mixmerge.reporting.markdown import delta, distinguishable
from mixmerge.reporting.plots import _errors
from tests.report_helpers import build_study
from tests.test_report import csv, row, run_report


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paired")
    build_study(root, root / "models")
    run_report(root)
    return root


def test_delta_columns_carry_paired_intervals_and_marks(study):
    main = csv(study, "main.csv")
    # Linear w0.5: harmful on 1 of 10 prompts per language against 1–3 for the 15% mix, on the
    # same prompt ids: −20 points of harm change, an interval below 0; the same win rate exactly.
    linear = row(main, stage="sft", row="Linear")
    assert linear["delta_harm_pct"] == pytest.approx(-20.0)
    assert (
        linear["delta_harm_ci_low"] < linear["delta_harm_ci_high"] < 0 and linear["delta_harm_sig"]
    )
    assert (linear["delta_win_ci_low"], linear["delta_win_ci_high"]) == (0.0, 0.0)
    assert not linear["delta_win_sig"]
    # SLERP w0.5 has the 15% mix's average but differs per language: an interval across 0.
    slerp = row(main, stage="sft", row="SLERP")
    assert (
        slerp["delta_harm_ci_low"] < 0 < slerp["delta_harm_ci_high"] and not slerp["delta_harm_sig"]
    )
    ref = row(main, stage="sft", row="15% safety mix")
    assert (ref["delta_harm_ci_low"], ref["delta_harm_ci_high"]) == (0.0, 0.0)
    text = (study / "run/report.md").read_text()
    low, high = linear["delta_harm_ci_low"], linear["delta_harm_ci_high"]
    assert f"| -20.0 [{low:+.1f}, {high:+.1f}]* | +0.0 [+0.0, +0.0] |" in text


def test_parents_table_and_paired_csv(study):
    parents = csv(study, "merge_parents.csv")
    w07 = parents[parents["name"] == "merge-objective-linear-w0.7"].set_index("parent_role")
    # Linear w0.7 has the safety parent's verdicts on every prompt: no difference at all.
    assert w07.loc["safety parent", "parent"] == "tiny-random-sft-mix100-all"
    assert (
        w07.loc["safety parent", "delta_harm_ci_low"]
        == 0.0
        == w07.loc["safety parent", "delta_harm_ci_high"]
    )
    assert w07.loc["general parent", "delta_win_pct"] == pytest.approx(-30.0)
    assert w07.loc["general parent", "delta_win_sig"]
    assert (
        len(parents) == 2 * 6 + 1
    )  # six SFT merges; the DPO merge's safety parent is not evaluated
    paired = csv(study, "paired.csv")
    hit = paired[
        (paired["name"] == "merge-objective-linear-w0.5")
        & (paired["against"] == "tiny-random-sft-mix15-all")
        & (paired["metric"] == "harm_rate")
    ].set_index("language")
    assert set(hit.index) == {"average", "en", "fr", "es", "hi", "ar", "ru"}
    assert hit.loc["es", "difference"] == pytest.approx(-20.0)  # 1 vs 3 harmful of 10
    assert hit.loc["es", "exact_test"] == "mcnemar" and 0 < hit.loc["es", "p_value"] <= 1
    assert hit.loc["en", "difference"] == 0.0 and hit.loc["en", "p_value"] == 1.0


def test_one_computed_sentence_per_table(study):
    text = (study / "run/report.md").read_text()
    main = text.split("## Main table")[1].split("## Merges by weight")[0]
    sentence = next(line for line in main.splitlines() if line.startswith("Against the 15%"))
    assert (
        "harm change for 0% safety mix (SFT), 100% safety mix (SFT), Linear (SFT), TIES (SFT)"
        in sentence
    )
    assert "SLERP (SFT)" not in sentence.split("win rate")[0]
    for section in ("## Merges by weight", "## Merges against their parents", "## Merge position"):
        part = text.split(section)[1].split("\n## ")[0]
        assert "paired 95% interval" in part, section


def test_distinguishable_sentence_rules():
    frame = pd.DataFrame(
        {
            "delta_harm_ci_low": [-3.0, float("nan"), -1.0],
            "delta_harm_sig": [False, False, False],
            "delta_win_ci_low": [-2.0, float("nan"), 1.0],
            "delta_win_sig": [False, False, True],
        }
    )
    assert distinguishable(frame.iloc[:2], ["a", "b"], "x").startswith(
        "None of the 1 differences from x is distinguishable"
    )
    assert "for no harm change and for win rate for c" in distinguishable(
        frame, ["a", "b", "c"], "x"
    )
    assert distinguishable(frame.iloc[1:2], ["b"], "x").startswith("No paired intervals against x")
    assert delta(-12.5, -20.1, -4.3, True) == "-12.5 [-20.1, -4.3]*"
    assert delta(1.0, -2.0, 3.0, False) == "+1.0 [-2.0, +3.0]"
    assert delta(1.0, float("nan"), float("nan"), False) == "+1.0"


def test_pareto_error_bars_come_from_the_bootstrap_intervals():
    point = pd.Series({"harm_change_pct": -40.0, "harm_change_ci_low": -55.0,
                       "harm_change_ci_high": -30.0})  # fmt: skip
    assert _errors(point, "harm_change") == [[15.0], [10.0]]
    assert _errors(pd.Series({"win_rate_pct": 50.0, "win_rate_ci_low": float("nan"),
                              "win_rate_ci_high": 60.0}), "win_rate") is None  # fmt: skip


def test_without_or_with_mismatched_judgements_deltas_have_no_interval(tmp_path):
    folders = build_study(tmp_path, tmp_path / "models")
    (folders["merge-objective-linear-w0.5"] / "judgements.jsonl").unlink()
    mismatched = folders["merge-objective-slerp-w0.5"] / "judgements.jsonl"
    records = [json.loads(line) for line in mismatched.read_text().splitlines()]
    records[0]["harmful"] = not records[0]["harmful"]
    mismatched.write_text("".join(json.dumps(r) + "\n" for r in records))
    run_report(tmp_path)
    main = csv(tmp_path, "main.csv")
    for name in ("Linear", "SLERP"):
        r = row(main, stage="sft", row=name)
        assert pd.isna(r["delta_harm_ci_low"]) and not r["delta_harm_sig"]
        assert not pd.isna(r["delta_harm_pct"])  # the point Δ stays
    text = (tmp_path / "run/report.md").read_text()
    assert "no paired interval: merge-objective-linear-w0.5: no judgements.jsonl" in text
    assert "merge-objective-slerp-w0.5: " in text and "does not match" in text
    assert "| SFT | Linear | `merge-objective-linear-w0.5` | 0.5 | -80.0" in text
    assert "Linear w0.5 (`merge-objective-linear-w0.5`): not found" in text


def test_unpaired_prompts_leave_the_delta_without_interval(tmp_path):
    folders = build_study(tmp_path, tmp_path / "models")
    path = folders["merge-objective-ties-w0.5"] / "judgements.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["id"] = "en-rt-other"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    run_report(tmp_path)
    ties = row(csv(tmp_path, "main.csv"), stage="sft", row="TIES")
    assert pd.isna(ties["delta_harm_ci_low"])
    assert "red-team prompts are not paired" in (tmp_path / "run/report.md").read_text()


def test_paired_samples_zero_and_bad_config(tmp_path):
    build_study(tmp_path, tmp_path / "models")
    run_report(tmp_path, "paired.samples=0")
    assert pd.isna(row(csv(tmp_path, "main.csv"), stage="sft", row="Linear")["delta_harm_ci_low"])
    from mixmerge.errors import MixmergeError

    with pytest.raises(MixmergeError, match=r"paired.samples=-1: expected an integer >= 0"):
        run_report(tmp_path, "paired.samples=-1")
