"""The report on a fixed synthetic study (tests/fixtures/report/study.json): table values,
Δ from the 15% mix, Pareto membership, stage order from provenance, figures, partial and
malformed inputs. Harm change = 20·harmful − 100 %, win rate = 10·wins % (see the spec)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from mixmerge.config import compose_config
from mixmerge.errors import MixmergeError
from mixmerge.lineage import LANGUAGE_MERGE, MIX, OBJECTIVE_MERGE, POST_MERGE, describe
from mixmerge.provenance import read_provenance
from mixmerge.reporting.run import report
from mixmerge.reporting.selection import pareto_front
from tests.report_helpers import build_study, eval_results, load_spec

PNGS = ("pareto.png", "weight_sensitivity.png", "heatmap.png")


def run_report(root: Path, *overrides: str) -> dict:
    return report(compose_config("report", list(overrides), root))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study, reported once with the default config."""
    root = tmp_path_factory.mktemp("study")
    build_study(root, root / "models")
    run_report(root)
    return root


def csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "run" / name)


def row(frame: pd.DataFrame, **match: object) -> pd.Series:
    hits = frame
    for key, value in match.items():
        hits = hits[hits[key] == value]
    assert len(hits) == 1, (match, hits)
    return hits.iloc[0]


def test_provenance_chain_gives_family_stage_and_order(study):
    models = study / "models"

    def d(name):
        return describe(read_provenance(models / name))

    assert (d("tiny-random-sft-mix15-all").family, d("tiny-random-sft-mix15-all").order) == (
        MIX,
        "SFT",
    )
    dpo = d("tiny-random-dpo-mix15-all")
    assert (dpo.family, dpo.stage, dpo.order, dpo.safety_ratio) == (MIX, "dpo", "SFT→DPO", 0.15)
    after = d("merge-objective-dpo-slerp-w0.5")  # a merge whose parents are DPO models
    assert (after.family, after.stage, after.order) == (OBJECTIVE_MERGE, "dpo", "SFT→DPO→merge")
    before = d("tiny-random-dpo-mix15-all-on-merge-objective-slerp-w0.5")  # DPO on a merge
    assert (before.family, before.stage, before.order) == (POST_MERGE, "dpo", "SFT→merge→DPO")
    assert (before.method, before.safety_weight) == ("slerp", 0.5)
    lang = d("merge-language-en_fr_es-ties")
    assert (lang.family, lang.languages, lang.parent_languages) == (
        LANGUAGE_MERGE, ("en", "fr", "es"), (("en",), ("fr",), ("es",))
    )  # fmt: skip
    assert d("merge-objective-ties-w0-0.5-1").safety_weight == [0.0, 0.5, 1.0]
    assert d("tiny-random-sft-mix0-all").base_model == "tiny-random"


def test_main_table_values_delta_from_15pct_mix_and_published_beside(study):
    main = csv(study, "main.csv")
    mix15 = row(main, stage="sft", row="15% safety mix")
    assert (mix15["harm_change_pct"], mix15["win_rate_pct"]) == pytest.approx((-60.0, 60.0))
    assert (mix15["delta_harm_pct"], mix15["delta_win_pct"]) == (0.0, 0.0)
    # best_weight.rule=balanced picks Linear w=0.5 (60 + 80 = 140 beats w0.3: 130 and w0.7: 120).
    linear = row(main, stage="sft", row="Linear")
    assert linear["name"] == "merge-objective-linear-w0.5" and linear["safety_weight"] == 0.5
    assert (linear["delta_harm_pct"], linear["delta_win_pct"]) == pytest.approx((-20.0, 0.0))
    assert linear["published_harm_change_pct"] == -49.1 and linear["published_win_rate_pct"] == 76.0
    assert linear["published_delta_harm_pct"] == pytest.approx(-49.1 + 56.6)
    ties = row(main, stage="sft", row="TIES")  # the gradient [0, 0.5, 1] loses to w=0.5
    assert ties["name"] == "merge-objective-ties-w0.5"
    assert (ties["delta_harm_pct"], ties["delta_win_pct"]) == pytest.approx((20.0, 20.0))
    mix100 = row(main, stage="sft", row="100% safety mix")
    assert (mix100["delta_harm_pct"], mix100["delta_win_pct"]) == pytest.approx((-20.0, -20.0))
    # DPO rows are measured from the DPO 15% mix (-80, 60), not the SFT one.
    slerp = row(main, stage="dpo", row="SLERP")
    assert (slerp["delta_harm_pct"], slerp["delta_win_pct"]) == pytest.approx((0.0, 10.0))
    assert slerp["published_win_rate_pct"] == 78.0
    # Study rows not run yet stay in the table, with the published numbers and no values.
    missing = row(main, stage="dpo", row="100% safety mix")
    assert pd.isna(missing["name"]) and math.isnan(missing["harm_change_pct"])
    assert missing["published_harm_change_pct"] == -68.2
    assert list(main[main["stage"] == "sft"]["row"]) == [
        "0% safety mix", "15% safety mix", "100% safety mix", "Linear", "SLERP", "TIES", "DARE-TIES",
    ]  # fmt: skip


def test_pareto_membership_per_stage(study):
    models = csv(study, "models.csv")
    assert set(models[models["pareto"]]["name"]) == {
        "merge-objective-linear-w0.3",  # (-60, 70)
        "merge-objective-linear-w0.5",  # (-80, 60)
        "merge-objective-ties-w0.5",  # (-40, 80)
        "merge-objective-dpo-slerp-w0.5",  # DPO (-80, 70)
        "tiny-random-dpo-mix15-all-on-merge-objective-slerp-w0.5",  # DPO (-100, 50)
    }


def test_pareto_front_rules():
    nan = float("nan")
    assert pareto_front([-50, -50, -40, -60, nan], [60, 60, 70, 50, 90]) == [
        True, True, True, True, False,
    ]  # fmt: skip
    assert pareto_front([-50, -40], [60, 60]) == [True, False]
    assert pareto_front([], []) == []


def test_newest_evaluation_is_used_and_runs_without_provenance_are_listed(study):
    models = csv(study, "models.csv")
    mix0 = row(models, name="tiny-random-sft-mix0-all")
    # An older evaluation in outputs/evaluate/runs/… gave 0 / 50; the newer one beside the model wins.
    assert (mix0["harm_change_pct"], mix0["win_rate_pct"], mix0["evaluations"]) == (-40.0, 70.0, 2)
    assert mix0["results_file"] == str(
        (study / "models/tiny-random-sft-mix0-all/eval_results.json").resolve()
    )
    text = (study / "run/report.md").read_text()
    assert "base (tiny-random)" in text and "multirun/evaluate" in text
    assert "tiny-random-dpo-mix100-all" in text  # a model without evaluation is named
    summary = json.loads((study / "run/summary.json").read_text())
    assert summary["evaluated_models"] == 14 and summary["not_evaluated_models"] == 4
    assert "main table (SFT): not evaluated yet: DARE-TIES" in summary["missing"]


def test_language_and_position_tables(study):
    lang = csv(study, "language_merges.csv")
    merged = row(lang, name="merge-language-en_fr_es-ties")
    assert merged["merged_languages"] == "en fr es"
    assert (merged["delta_harm_pct"], merged["delta_win_pct"]) == pytest.approx((20.0, 10.0))
    assert (merged["published_harm_change_pct"], merged["published_win_rate_pct"]) == (-65.3, 77.0)
    assert row(lang, row="multilingual 15% safety mix")["name"] == "tiny-random-sft-mix15-all"
    assert pd.isna(row(lang, row="TIES merge of the six monolingual models")["name"])

    pos = csv(study, "merge_position.csv")
    assert list(pos["order"]) == ["SFT→merge", "SFT→DPO→merge", "SFT→merge→DPO"]
    assert list(pos["name"]) == [
        "merge-objective-slerp-w0.5",
        "merge-objective-dpo-slerp-w0.5",
        "tiny-random-dpo-mix15-all-on-merge-objective-slerp-w0.5",
    ]
    assert list(pos["harm_change_pct"]) == [-60.0, -80.0, -100.0]
    assert list(pos["published_harm_change_pct"]) == [-58.2, -57.8, -61.2]


def test_per_language_table(study):
    per = csv(study, "per_language.csv")
    assert len(per) == 14 * 6
    mix15 = per[per["name"] == "tiny-random-sft-mix15-all"].set_index("language")
    assert (
        mix15.loc["en", "harm_change_pct"] == -80.0 and mix15.loc["es", "harm_change_pct"] == -40.0
    )
    assert mix15.loc["fr", "win_rate_pct"] == 60.0
    assert mix15.loc["en", "win_rate_ci_low"] <= 60.0 <= mix15.loc["en", "win_rate_ci_high"]


def test_figures_markdown_and_latest_copy(study):
    run, latest = study / "run", study / "outputs/report/latest"
    for name in PNGS:
        image = matplotlib.image.imread(run / name)
        assert image.shape[0] > 300 and image.shape[1] > 300 and image.std() > 0.05, name
    assert sorted(p.name for p in latest.iterdir()) == sorted(
        p.name for p in run.iterdir() if p.is_file()
    )
    assert (latest / "report.md").read_text() == (run / "report.md").read_text()
    text = (run / "report.md").read_text()
    for needle in (
        "## Main table",
        "published (Aya 23 8B, GPT-4 judge)",
        "![",
        "## Merge position",
    ):
        assert needle in text
    assert not list(run.glob(".report-*")) and not list(latest.parent.glob(".tmp-*"))


def test_merge_weights_all_and_best_by(tmp_path):
    build_study(tmp_path, tmp_path / "models")
    run_report(tmp_path, "merge_weights=all")
    main = csv(tmp_path, "main.csv")
    assert list(main[(main["stage"] == "sft") & (main["row"] == "Linear")]["safety_weight"]) == [
        "0.3", "0.5", "0.7",
    ]  # fmt: skip
    run_report(tmp_path, "best_weight.rule=win")  # the same run directory: files are replaced
    main = csv(tmp_path, "main.csv")
    assert row(main, stage="sft", row="Linear")["name"] == "merge-objective-linear-w0.3"


def test_best_weight_considers_only_real_merges_unless_told(tmp_path):
    spec = load_spec()
    parents = ["tiny-random-sft-mix0-all", "tiny-random-sft-mix100-all"]
    for w, harmful, wins in ((0, 0, 10), (1, 0, 9)):  # endpoints that would win every rule
        spec["models"].append(
            {"name": f"merge-objective-linear-w{w}", "kind": "merge", "method": "linear",
             "recipe": "objective", "safety_weight": w, "parents": parents,
             "eval": {"harmful": harmful, "wins": wins, "created": "2026-01-03T10:00:00+00:00"}}
        )  # fmt: skip
    spec["models"].append(
        {"name": "merge-objective-dare_ties-w1", "kind": "merge", "method": "dare_ties",
         "recipe": "objective", "safety_weight": 1, "parents": parents,
         "eval": {"harmful": 1, "wins": 4, "created": "2026-01-03T10:00:00+00:00"}}
    )  # fmt: skip
    build_study(tmp_path, tmp_path / "models", spec)
    run_report(tmp_path)
    main = csv(tmp_path, "main.csv")
    assert row(main, stage="sft", row="Linear")["name"] == "merge-objective-linear-w0.5"
    assert pd.isna(row(main, stage="sft", row="DARE-TIES")["name"])
    text = (tmp_path / "run/report.md").read_text()
    assert (
        "among real merges (0 < w < 1" in text and "`best_weight.include_endpoints=false`" in text
    )
    assert "DARE-TIES has only w = 0 / 1 evaluated" in text
    merges = csv(tmp_path, "merges.csv")
    assert list(merges[merges["method"] == "linear"]["endpoint"]) == [
        True,
        False,
        False,
        False,
        True,
    ]
    for rule, expected in (("balanced", "w0"), ("harm", "w0"), ("win", "w0")):
        run_report(tmp_path, f"best_weight.rule={rule}", "best_weight.include_endpoints=true")
        linear = row(csv(tmp_path, "main.csv"), stage="sft", row="Linear")
        assert linear["name"] == f"merge-objective-linear-{expected}", rule
    assert (
        "among every evaluated weight (`best_weight.rule=win`"
        in (tmp_path / "run/report.md").read_text()
    )
    run_report(tmp_path, "best_weight.rule=harm")  # among real merges: w0.5 and w0.7 tie (−80)
    assert row(csv(tmp_path, "main.csv"), stage="sft", row="Linear")["safety_weight"] in (
        0.5,
        0.7,
    )


def test_empty_results_are_reported_not_an_error(tmp_path):
    summary = run_report(tmp_path)
    assert summary["evaluated_models"] == 0
    text = (tmp_path / "run/report.md").read_text()
    assert "no evaluated model with provenance" in text and "(not found: `" in text
    assert "pareto.png: not drawn" in text
    assert not list((tmp_path / "run").glob("*.png"))
    assert len(pd.read_csv(tmp_path / "run/published.csv")) == 20


def test_partial_results_say_what_is_missing(tmp_path):
    spec = load_spec()
    spec["models"] = [m for m in spec["models"] if m["kind"] == "train" and m["objective"] == "sft"]
    spec["run_dir_results"] = []
    build_study(tmp_path, tmp_path / "models", spec)
    run_report(tmp_path)
    run = tmp_path / "run"
    assert (run / "pareto.png").is_file() and (run / "heatmap.png").is_file()
    assert not (run / "weight_sensitivity.png").exists()
    text = (run / "report.md").read_text()
    assert "weight_sensitivity.png: not drawn (no evaluated objective merge" in text
    assert "DPO: no evaluated DPO model" in text
    assert "not evaluated yet: Linear, SLERP, TIES, DARE-TIES" in text


def test_judge_filter_and_mixed_judges(tmp_path):
    spec = load_spec()
    folders = build_study(tmp_path, tmp_path / "models", spec)
    newer = {"harmful": 0, "wins": 9, "created": "2026-02-01T00:00:00+00:00"}
    other = eval_results(
        {**spec, "judge": "openai_compatible"}, newer, folders["tiny-random-sft-mix15-all"], "x"
    )
    path = tmp_path / "outputs/evaluate/runs/2026-02-01_00-00-00/eval_results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(other))
    run_report(tmp_path)
    models = csv(tmp_path, "models.csv")
    assert row(models, name="tiny-random-sft-mix15-all")["judge"] == "openai_compatible"
    assert "results come from 2 judges" in (tmp_path / "run/report.md").read_text()
    run_report(tmp_path, "select.judge=offline")
    models = csv(tmp_path, "models.csv")
    assert row(models, name="tiny-random-sft-mix15-all")["harm_change_pct"] == -60.0
    assert set(models["judge"]) == {"offline"}


def test_the_decoding_is_stated_and_mixed_decodings_are_flagged(tmp_path):
    spec = load_spec()
    folders = build_study(tmp_path, tmp_path / "models", spec)
    run_report(tmp_path)
    text = (tmp_path / "run/report.md").read_text()
    assert "decoding: greedy, 8 new tokens ·" in text and "decodings" not in text
    newer = {"harmful": 0, "wins": 9, "created": "2026-02-01T00:00:00+00:00"}
    dry = eval_results(spec, newer, folders["tiny-random-sft-mix15-all"], "x")
    dry["generation"] |= {"do_sample": False, "dry_multiplier": 0.8, "dry_base": 1.75}
    dry["generation"]["dry_allowed_length"] = 2
    (folders["tiny-random-sft-mix15-all"] / "eval_results.json").write_text(json.dumps(dry))
    run_report(tmp_path)
    models = csv(tmp_path, "models.csv")
    assert (
        row(models, name="tiny-random-sft-mix15-all")["decoding"] == "greedy, 8 new tokens, DRY 0.8"
    )
    assert row(models, name="tiny-random-sft-mix0-all")["decoding"] == "greedy, 8 new tokens"
    text = (tmp_path / "run/report.md").read_text()
    assert "results come from 2 decodings" in text
    assert "decoding: greedy, 8 new tokens; greedy, 8 new tokens, DRY 0.8 ·" in text


@pytest.mark.parametrize(
    ("target", "content", "message"),
    [
        ("models/tiny-random-sft-mix0-all/eval_results.json", "{not json", "malformed eval_results.json: Expecting property name"),
        ("models/tiny-random-sft-mix0-all/eval_results.json", '{"model": {"path": "x"}, "average": {}, "languages": {}}',
         "malformed eval_results.json: 'average.harm_change_pct' is missing"),
        ("models/merge-objective-ties-w0.5/mixmerge.json", '{"kind": "guess"}', "malformed mixmerge.json: 'kind' is 'guess'"),
        ("outputs/evaluate/runs/x/eval_results.json", "[1, 2]", "malformed eval_results.json: expected a JSON object"),
    ],
)  # fmt: skip
def test_malformed_file_is_one_line_error_naming_it(tmp_path, target, content, message):
    build_study(tmp_path, tmp_path / "models")
    bad = tmp_path / target
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(content)
    with pytest.raises(MixmergeError) as err:
        run_report(tmp_path)
    assert str(err.value).startswith(f"{bad.resolve()}: ") and message in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "outputs/report/latest").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "best_weight.rule=fastest",
            "best_weight.rule=fastest: expected one of balanced, harm, win",
        ),
        (
            "best_weight.include_endpoints=maybe",
            "best_weight.include_endpoints=maybe: expected true or false",
        ),
        ("merge_weights=some", "merge_weights=some: expected best or all"),
        ("reference_safety_ratio=1.5", "reference_safety_ratio=1.5: expected a number in [0, 1]"),
        ("search_dirs=[]", "search_dirs=[]: expected a non-empty list of folders"),
    ],
)
def test_bad_config_is_rejected_before_reading(tmp_path, override, message):
    with pytest.raises(MixmergeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_report(tmp_path, override)


def test_copied_study_still_reports(tmp_path, study):
    """Results beside a model belong to it even after the folder moved (paths inside are stale)."""
    shutil.copytree(study / "models", tmp_path / "elsewhere")
    run_report(tmp_path, f"search_dirs=[{tmp_path / 'elsewhere'}]", "latest_dir=null")
    assert len(csv(tmp_path, "models.csv")) == 14
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("logger", ["none", "csv", "wandb"])
def test_report_config_composes_with_every_logger(tmp_path, logger):
    from hydra.utils import instantiate

    from mixmerge.config import resolved_config

    cfg = compose_config("report", [f"logger={logger}"], tmp_path)
    resolved = resolved_config(cfg)
    assert resolved["search_dirs"][0] == str(tmp_path / "models")
    assert resolved["latest_dir"] == str(tmp_path / "outputs/report/latest")
    for node in (cfg.get("logger") or {}).values():
        instantiate(node)


def test_languages_without_fluent_answers_are_flagged(tmp_path):
    spec = load_spec()
    folders = build_study(tmp_path, tmp_path / "models", spec)
    path = folders["tiny-random-sft-mix15-all"] / "eval_results.json"
    results = json.loads(path.read_text())
    results["fluency"] = {
        "model": {
            "threshold": 0.8,
            "below_threshold": ["hi"],
            "per_language": {"hi": {"share": 0.25}},
        },
        "baseline": {"threshold": 0.8, "below_threshold": [], "per_language": {}},
    }
    path.write_text(json.dumps(results))
    run_report(tmp_path)
    assert (
        row(csv(tmp_path, "models.csv"), name="tiny-random-sft-mix15-all")["fluency_below"]
        == "model: hi 25%"
    )
    report = (tmp_path / "run/report.md").read_text()
    assert "tiny-random-sft-mix15-all: too few fluent answers (model: hi 25%)" in report
    assert "mix0-all: too few fluent" not in report
