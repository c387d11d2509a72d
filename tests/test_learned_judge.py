"""The learned offline judge: training on train, choosing on dev (test never chooses), the JSON
file (deterministic, read back without scikit-learn, same numbers as scikit-learn), position-free
pairwise verdicts, speed, and files that are missing or from another format version."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mixmerge.errors import MixmergeError
from mixmerge.evaluation import learned_judge as lj
from mixmerge.evaluation.labels import load_labels
from mixmerge.evaluation.offline_judge import OfflineJudge
from mixmerge.evaluation.validation import validate
from tests.helpers import CONF, run_cli
from tests.judge_helpers import write_jsonl, write_labels


def options(output: Path):
    learned = OmegaConf.load(CONF / "judge_validate.yaml").learned
    learned.output = str(output)
    return OmegaConf.create({"learned": learned})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned")
    labels = load_labels(write_labels(root / "labels"))
    data = lj.train_learned(options(root / "judge.json"), labels)
    return root, labels, data


def test_it_learns_what_the_lexicon_misses_and_records_test_figures(trained):
    root, labels, data = trained
    judge = lj.LearnedJudge(str(root / "judge.json"))
    test = labels.split("test")
    mine, lexicon = validate(judge, test), validate(OfflineJudge(), test)
    assert mine["harm"]["overall"]["agreement"] > lexicon["harm"]["overall"]["agreement"]
    assert mine["harm"]["overall"]["agreement"] >= 0.9 and mine["harm"]["overall"]["recall"] >= 0.85
    assert mine["pairs"]["overall"]["agreement_non_tie"] >= 0.8
    # The file carries exactly the figures the judge it holds gets on test.
    shipped = judge.validation()
    assert shipped["harm"]["agreement"] == mine["harm"]["overall"]["agreement"]
    assert shipped["labels"]["split"] == "test" and shipped["source"] == str(root / "judge.json")
    assert data["format_version"] == lj.FORMAT_VERSION and data["trained_on"]["split"] == "train"
    assert len(data["selection"]["harm"]) == 4 * 2 * 2 * 4  # C × prompt × weights × thresholds
    verdict, why = judge.harmful_with_reason("q", "I can't help with that.", "en")
    assert verdict is False and why.startswith("P(harmful)=")


def test_training_is_deterministic_and_test_labels_choose_nothing(trained, tmp_path):
    root, labels, _ = trained
    again = tmp_path / "again.json"
    lj.train_learned(options(again), labels)
    assert again.read_bytes() == (root / "judge.json").read_bytes()
    # Flip every test label: the chosen settings and the coefficients stay, only the figures move.
    items = [i.model_dump(exclude_none=True) for i in labels.harm + labels.pairs]
    flip = {"harmful": "harmless", "harmless": "harmful", "a": "b", "b": "a", "tie": "tie"}
    for item in items:
        if item["split"] == "test":
            item["label"] = flip[item["label"]]
    flipped = load_labels(write_jsonl(tmp_path / "flipped.jsonl", items))
    other = lj.train_learned(options(tmp_path / "flipped.json"), flipped)
    original = json.loads((root / "judge.json").read_text())
    for part in ("harm", "pair"):
        assert other[part]["settings"] == original[part]["settings"]
        assert other[part]["coef"] == original[part]["coef"]
    assert other["validation"]["harm"]["agreement"] < original["validation"]["harm"]["agreement"]


def test_the_json_model_gives_scikit_learns_probabilities(trained):
    from sklearn.linear_model import LogisticRegression

    _, labels, _ = trained
    train = labels.split("train").harm
    vec = lj._vectorizer([i.response for i in train], 1, 4, 20000, 2)
    x = lj._harm_design(train, {"response": vec})
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(x, [i.label == "harmful" for i in train])
    model = lj.LinearModel(
        {"ngram_range": [1, 4], "fields": {"response": lj._field(vec)}, "dense": lj.HARM_DENSE,
         "coef": clf.coef_.tolist(), "intercept": clf.intercept_.tolist(), "settings": {}}
    )  # fmt: skip
    dev = labels.split("dev").harm
    expected = clf.predict_proba(lj._harm_design(dev, {"response": vec}))[:, 1]
    got = [lj.harm_probability(model, i.prompt, i.response, i.language) for i in dev]
    # idf is stored to 6 significant digits
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_pairwise_verdicts_do_not_depend_on_position(trained):
    root, labels, _ = trained
    judge = lj.LearnedJudge(str(root / "judge.json"))
    for item in labels.pairs[:30]:
        forward = judge.compare(
            item.prompt, item.response_a, item.response_b, item.language, item.reference
        )
        backward = judge.compare(
            item.prompt, item.response_b, item.response_a, item.language, item.reference
        )
        assert forward + backward == 1.0
    assert judge.compare("q", "Same answer.", "same  answer.", "en", None) == 0.5


def test_judging_is_fast(trained):
    root, labels, _ = trained
    judge = lj.LearnedJudge(str(root / "judge.json"))
    start = time.perf_counter()
    for item in (labels.harm * 3)[:200]:
        judge.harmful(item.prompt, item.response, item.language)
    for item in (labels.pairs * 3)[:200]:
        judge.compare(item.prompt, item.response_a, item.response_b, item.language, item.reference)
    assert time.perf_counter() - start < 10  # a default evaluation: 96 + 2×96 judgements


def test_missing_foreign_and_broken_files(trained, tmp_path):
    root, _, _ = trained
    with pytest.raises(
        MixmergeError, match=r"judge.path=.*nowhere.json: no trained judge file \(train one"
    ):
        lj.LearnedJudge(str(tmp_path / "nowhere.json")).check(["en"])
    data = json.loads((root / "judge.json").read_text())
    (tmp_path / "v9.json").write_text(json.dumps({**data, "format_version": 9}))
    with pytest.raises(MixmergeError, match=r"format version 9, this mixmerge .* reads version 1"):
        lj.LearnedJudge(str(tmp_path / "v9.json")).check(["en"])
    (tmp_path / "half.json").write_text(json.dumps({k: v for k, v in data.items() if k != "pair"}))
    with pytest.raises(MixmergeError, match="the 'pair' classifier is missing"):
        lj.LearnedJudge(str(tmp_path / "half.json")).check(["en"])
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(MixmergeError, match="not a trained judge file"):
        lj.LearnedJudge(str(tmp_path / "junk.json")).check(["en"])
    with pytest.raises(MixmergeError, match="harm_threshold=1.5"):
        lj.LearnedJudge(str(root / "judge.json"), harm_threshold=1.5)


def test_training_needs_a_dev_split(tmp_path):
    labels = load_labels(write_labels(tmp_path / "labels"))
    items = [i.model_dump(exclude_none=True) for i in labels.harm + labels.pairs]
    items = [{**i, "split": "train" if i["split"] == "dev" else i["split"]} for i in items]
    no_dev = load_labels(write_jsonl(tmp_path / "no_dev.jsonl", items))
    with pytest.raises(MixmergeError, match="no harm items in the dev split"):
        lj.train_learned(options(tmp_path / "x.json"), no_dev)
    assert not (tmp_path / "x.json").exists()


def test_train_then_validate_through_the_cli(tmp_path):
    labels = write_labels(tmp_path / "labels", prompts_per_language=10)
    trained = run_cli(
        "mixmerge.judge", "train=true", f"labels.path={labels}", "hydra.run.dir=train",
        "learned.harm_grid.C=[1.0]", "learned.harm_grid.use_prompt=[false]", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Trained judge written to" in trained.stdout
    checked = run_cli(
        "mixmerge.judge", "judge=learned", f"judge.path={tmp_path}/train/learned_judge.json",
        f"labels.path={labels}", "labels.split=dev", "hydra.run.dir=check", cwd=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr[-3000:]
    out = json.loads((tmp_path / "check/judge_validation.json").read_text())
    assert out["judge"]["name"] == "learned" and out["labels"]["split"] == "dev"


def test_evaluation_results_and_the_report_carry_the_judges_validation(
    trained, tmp_path, cache_dir
):
    from types import SimpleNamespace

    from mixmerge.config import compose_config
    from mixmerge.evaluation.run import evaluate
    from mixmerge.reporting.run import judges_with_validation

    root, _, data = trained
    fast = ["model=tiny_random", "max_prompts_per_language=1", "generation.max_new_tokens=4",
            "bootstrap.samples=0", "languages=en", "model_ref=base"]  # fmt: skip
    cfg = compose_config(
        "evaluate", [*fast, "judge=learned", f"judge.path={root}/judge.json"], tmp_path
    )
    results = evaluate(cfg)
    shipped = results["judge"]["validation"]
    assert shipped["harm"] == data["validation"]["harm"] and shipped["labels"]["split"] == "test"
    assert json.loads((tmp_path / "run/eval_results.json").read_text())["judge"]["validation"]
    # The lexicon judge is validated only with its shipped settings: another margin is not.
    unvalidated = evaluate(
        compose_config(
            "evaluate", [*fast, "judge=lexicon", "judge.tie_margin=0.05"], tmp_path / "lex"
        )
    )
    assert unvalidated["judge"]["validation"] is None
    header = judges_with_validation(
        [
            SimpleNamespace(judge_label="learned", results=results),
            SimpleNamespace(judge_label="lexicon", results=unvalidated),
        ]
    )
    pct = f"{100 * data['validation']['harm']['agreement']:.0f}%"
    assert f"learned (validated on the labelled test split: harm agreement {pct}" in header
    assert "lexicon (not validated on labelled real outputs" in header


def test_a_retrained_file_is_another_judge(trained, tmp_path, cache_dir):
    """Evaluations record the trained file's digest: a study re-run with a retrained judge of the
    same name evaluates again instead of keeping the old verdicts, and the report tells the two
    apart (rows judged by different weights are flagged as from different judges)."""
    from mixmerge.config import compose_config
    from mixmerge.evaluation.run import evaluate
    from mixmerge.reporting.collect import judge_label
    from mixmerge.reporting.missing import warnings

    root, _, data = trained
    retrained = tmp_path / "retrained.json"
    changed = json.loads((root / "judge.json").read_text())
    changed["harm"]["intercept"] = [v + 0.5 for v in changed["harm"]["intercept"]]
    retrained.write_text(json.dumps(changed))
    fast = ["model=tiny_random", "max_prompts_per_language=1", "generation.max_new_tokens=4",
            "bootstrap.samples=0", "languages=en", "model_ref=base", "judge=learned"]  # fmt: skip
    first = evaluate(
        compose_config("evaluate", [*fast, f"judge.path={root}/judge.json"], tmp_path / "a")
    )
    digest = first["judge"]["fingerprint"]
    assert digest == lj.LearnedJudge(str(root / "judge.json")).fingerprint and len(digest) == 64
    same = evaluate(
        compose_config(
            "evaluate",
            [*fast, f"judge.path={root}/judge.json", "skip_existing=true"],
            tmp_path / "b",
        )
    )
    assert same["created"] == first["created"]  # the same weights: skipped
    second = evaluate(
        compose_config(
            "evaluate", [*fast, f"judge.path={retrained}", "skip_existing=true"], tmp_path / "c"
        )
    )
    assert second["judge"]["fingerprint"] != digest  # other weights: judged again
    assert judge_label(first) != judge_label(second)
    assert judge_label(first) == f"learned (weights {digest[:8]})"
    import pandas as pd

    frame = pd.DataFrame({"judge": [judge_label(first), judge_label(second)]})
    for column in ("baseline", "decoding", "base_model", "eval_languages"):
        frame[column] = "x"
    assert any("2 judges" in line for line in warnings(frame))
