"""`python -m mixmerge.judge`: a judge's figures against labels (hand-checked metrics, the CLI as a
user runs it, an HTTP judge whose unparsed replies are counted, bad input) and how shipped
figures reach an evaluation."""

from __future__ import annotations

import json

import pytest

from mixmerge.evaluation import validation
from mixmerge.evaluation.labels import load_labels
from mixmerge.evaluation.offline_judge import OfflineJudge
from mixmerge.evaluation.openai_judge import OpenAICompatibleJudge
from mixmerge.evaluation.validation import harm_figures, pair_figures, shipped_validation, validate
from tests.helpers import run_cli
from tests.judge_helpers import harm_items, write_jsonl, write_labels
from tests.test_eval_openai_judge import FakeEndpoint, user_text


def test_harm_figures_by_hand():
    gold = ["harmful", "harmful", "harmless", "harmless", "harmful", "harmful"]
    pred = ["harmful", "harmless", "harmless", "harmful", None, "harmful"]
    f = harm_figures(gold, pred)
    assert (f["n"], f["decided"], f["unparsed"], f["gold_harmful"]) == (6, 5, 1, 4)
    # decided: TP 2, FN 1, TN 1, FP 1 → agreement 3/5, precision 2/3, recall 2/3
    assert f["agreement"] == 0.6 and f["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert f["recall"] == pytest.approx(2 / 3, abs=1e-4) and f["f1"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    # kappa: p_o 0.6, p_e 0.6·0.6 + 0.4·0.4 = 0.52 → (0.6 − 0.52) / 0.48
    assert f["kappa"] == pytest.approx(0.08 / 0.48, abs=1e-4)
    assert f["confusion"] == {
        "harmful": {"harmful": 2, "harmless": 1},
        "harmless": {"harmful": 1, "harmless": 1},
    }
    assert harm_figures(["harmless"] * 3, ["harmless"] * 3)["kappa"] is None  # undefined, not 1
    assert harm_figures(["harmful"], [None])["agreement"] is None


def test_pair_figures_by_hand():
    gold = ["a", "b", "a", "tie", "tie", "b"]
    pred = ["a", "tie", "b", "tie", "a", "b"]
    f = pair_figures(gold, pred)
    assert f["non_tie"] == 4 and f["agreement_non_tie"] == 0.5  # a✓ b✗(tie) a✗ b✓
    assert f["agreement_decisive"] == pytest.approx(2 / 3, abs=1e-4)  # the judge's tie left out
    assert f["agreement"] == 0.5 and f["gold_ties"] == 2
    assert f["confusion"]["tie"] == {"a": 1, "b": 0, "tie": 1}


def test_the_cli_validates_the_lexicon_judge_and_writes_json(tmp_path):
    labels = write_labels(tmp_path / "labels")
    result = run_cli(
        "mixmerge.judge", "judge=lexicon", f"labels.path={labels}", "hydra.run.dir=run",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "run/judge_validation.json").read_text())
    # The same figures as judging the test split here, item by item.
    test = load_labels(labels).split("test")
    judge = OfflineJudge()
    agree = sum(
        judge.harmful(i.prompt, i.response, i.language) == (i.label == "harmful") for i in test.harm
    )
    harm = out["figures"]["harm"]["overall"]
    assert harm["n"] == len(test.harm) and harm["agreement"] == round(agree / len(test.harm), 4)
    assert harm["agreement"] < 1  # off-topic answers and refusals-then-content fool the lexicon
    assert set(out["figures"]["harm"]["per_language"]) == {"en", "fr", "es", "hi", "ar", "ru"}
    assert out["figures"]["pairs"]["overall"]["n"] == len(test.pairs)
    assert out["judge"]["name"] == "lexicon" and out["labels"]["split"] == "test"
    assert "agree" in result.stdout and "\nall " in result.stdout


def test_split_all_and_dev(tmp_path):
    labels = load_labels(write_labels(tmp_path / "labels"))
    every = validate(OfflineJudge(), labels.split("all"))
    dev = validate(OfflineJudge(), labels.split("dev"))
    assert every["harm"]["overall"]["n"] == len(labels.harm)
    assert dev["harm"]["overall"]["n"] == len(labels.split("dev").harm) < len(labels.harm)


def test_an_http_judge_unparsed_replies_are_counted_not_guessed(tmp_path):
    # Always "harmless", and no verdict at all for Arabic requests.
    def script(body, n):
        text = user_text(body)
        if "[Request]" in text:
            request = text.split("[Request]\n", 1)[1].split("[Response]", 1)[0]
            if any("\u0600" <= c <= "\u06ff" for c in request):
                return 200, {}, "@I cannot say."
            return 200, {}, "@Verdict: HARMLESS"
        return 200, {}, "@Verdict: TIE"

    server = FakeEndpoint(script)
    try:
        judge = OpenAICompatibleJudge(
            base_url=server.url, model="m", api_key_env=None, parse_retries=0, concurrency=2
        )
        labels = load_labels(write_labels(tmp_path / "labels")).split("test")
        figures = validate(judge, labels)
    finally:
        server.close()
    ar = figures["harm"]["per_language"]["ar"]
    assert ar["unparsed"] == ar["n"] and ar["agreement"] is None
    overall = figures["harm"]["overall"]
    assert overall["unparsed"] == ar["n"] and overall["recall"] == 0.0  # never says harmful
    assert figures["pairs"]["overall"]["agreement_non_tie"] == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["labels.split=val"], "labels.split=val: expected one of train, dev, test, all"),
        (["ship=true"], "ship=true: only figures on the bundled labels' test split"),
        (
            ["judge=learned", "judge.path=nowhere.json"],
            "judge.path=nowhere.json: no trained judge file",
        ),
    ],
)
def test_bad_settings_are_one_line(tmp_path, args, message):
    labels = write_labels(tmp_path / "labels")
    result = run_cli(
        "mixmerge.judge", f"labels.path={labels}", "hydra.run.dir=run", *args, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"mixmerge: error: {message}")
    assert not (tmp_path / "run/judge_validation.json").exists()


def test_a_bad_labels_file_names_its_line_and_writes_nothing(tmp_path):
    items = harm_items(3)
    items[6]["label"] = "unsure"
    path = write_jsonl(tmp_path / "bad.jsonl", items)
    result = run_cli(
        "mixmerge.judge", "judge=lexicon", f"labels.path={path}", "hydra.run.dir=run", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"mixmerge: error: {path}:7: label: expected 'harmful' or 'harmless' (got 'unsure')"
    )
    assert not (tmp_path / "run/judge_validation.json").exists()


def test_shipped_figures_follow_the_judge_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "VALIDATED_DIR", tmp_path)
    labels = load_labels(write_labels(tmp_path / "labels"))
    config = {"_target_": "mixmerge.evaluation.offline_judge.OfflineJudge", "name": "lexicon",
              "tie_margin": 0.02}  # fmt: skip
    judge = OfflineJudge(name="lexicon")
    assert shipped_validation(judge, config) is None  # nothing shipped yet
    record = {
        "judge": {"name": "lexicon", "config": config},
        "labels": {"split": "test", "sha256": "x", "items": {"harm": 1}, "files": []},
        "figures": validate(judge, labels.split("test")),
    }
    (tmp_path / "lexicon.json").write_text(json.dumps(record))
    found = shipped_validation(judge, config)
    assert found["harm"]["agreement"] == record["figures"]["harm"]["overall"]["agreement"]
    assert found["per_language"]["hi"]["harm_agreement"] is not None
    # Another tie margin is another judge: its figures are not these.
    assert shipped_validation(judge, {**config, "tie_margin": 0.1}) is None
