"""The recorded judge (verdicts replayed from a labelled file) and the bundled second reader:
agreement measured by the same code as any judge's, pairs mirrored, gaps counted, conflicts
refused, and the second reader covering the bundled test split item for item."""

from __future__ import annotations

import json

import pytest

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.labels import load_labels
from mixmerge.evaluation.recorded_judge import RecordedJudge
from mixmerge.evaluation.validation import validate
from tests.helpers import run_cli
from tests.judge_helpers import harm_items, pair_items, write_jsonl, write_labels


def _flip(item: dict) -> dict:
    other = {"harmful": "harmless", "harmless": "harmful", "a": "b", "b": "a", "tie": "a"}
    return {**item, "label": other[item["label"]]}


def test_replaying_the_labels_agrees_fully_and_each_changed_verdict_counts(tmp_path):
    harm, pairs = harm_items(6), pair_items(6)
    gold = load_labels(write_labels(tmp_path / "gold", 6)).split("all")
    assert validate(RecordedJudge(str(tmp_path / "gold")), gold)["harm"]["overall"]["kappa"] == 1
    # A second reader who disagrees on three harm items and two pairs.
    changed_harm, changed_pairs = {1, 7, 20}, {0, 5}
    second = [_flip(i) if n in changed_harm else i for n, i in enumerate(harm)] + [
        _flip(i) if n in changed_pairs else i for n, i in enumerate(pairs)
    ]
    judge = RecordedJudge(str(write_jsonl(tmp_path / "second.jsonl", second)))
    figures = validate(judge, gold)
    assert figures["harm"]["overall"]["agreement"] == round(1 - 3 / len(harm), 4)
    assert figures["pairs"]["overall"]["agreement"] == round(1 - 2 / len(pairs), 4)
    assert judge.stats == {"recorded": len(harm) + len(pairs), "missing": 0}
    # Verdicts carry where they came from (the audit file's reason).
    item = gold.harm[1]
    verdict, reason = judge.harmful_with_reason(item.prompt, item.response, item.language)
    assert verdict is (item.label != "harmful") and reason == f"recorded as {item.id}"


def test_a_pair_asked_the_other_way_round_is_mirrored_and_a_gap_is_undecided(tmp_path):
    pair = next(p for p in pair_items(3) if p["label"] == "a")
    judge = RecordedJudge(str(write_jsonl(tmp_path / "p.jsonl", [pair])))
    args = (pair["prompt"], pair["response_a"], pair["response_b"], pair["language"], None)
    assert judge.compare(*args) == 1.0
    swapped = (pair["prompt"], pair["response_b"], pair["response_a"], pair["language"], None)
    assert judge.compare_with_reason(*swapped) == (
        0.0,
        f"recorded as {pair['id']} (A and B swapped)",
    )
    assert judge.harmful(pair["prompt"], "an answer nobody read", pair["language"]) is None
    assert judge.compare(pair["prompt"], "x", "y", pair["language"], None) is None
    assert judge.stats["missing"] == 2
    # Same texts in another language are another item.
    assert (
        judge.compare(args[0], args[1], args[2], "en" if pair["language"] != "en" else "fr", None)
        is None
    )


def test_two_labels_for_the_same_texts_are_refused(tmp_path):
    item = harm_items(2)[0]
    twin = {**_flip(item), "id": item["id"] + "-again"}
    path = write_jsonl(tmp_path / "h.jsonl", [item, twin])
    with pytest.raises(MixmergeError, match=r"'h-en-0-0' and 'h-en-0-0-again' give the same"):
        RecordedJudge(str(path))
    # The same label twice is one verdict, not a conflict.
    RecordedJudge(str(write_jsonl(tmp_path / "ok.jsonl", [item, {**item, "id": "dup"}])))


def test_the_bundled_second_reader_covers_the_test_split_item_for_item():
    bundled = load_labels().split("test")
    second = load_labels(RecordedJudge().files[0])
    assert {i.split for i in second.harm + second.pairs} == {"test"}
    assert len(second.harm) == len(bundled.harm) and len(second.pairs) == len(bundled.pairs)
    judge = RecordedJudge()
    figures = validate(judge, bundled)
    assert judge.stats["missing"] == 0
    assert (
        figures["harm"]["overall"]["unparsed"] == 0 and figures["pairs"]["overall"]["unparsed"] == 0
    )
    # Two readers agree often but not always: the figures are measured, not an identity.
    assert 0.5 < figures["harm"]["overall"]["agreement"] < 1


def test_the_cli_validates_a_recorded_file_and_refuses_a_missing_one(tmp_path):
    labels = write_labels(tmp_path / "labels")
    ok = run_cli(
        "mixmerge.judge", "judge=recorded", f"judge.path={labels}", f"labels.path={labels}",
        "hydra.run.dir=run", cwd=tmp_path,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    out = json.loads((tmp_path / "run/judge_validation.json").read_text())
    assert out["figures"]["harm"]["overall"]["agreement"] == 1.0
    assert out["judge"]["stats"]["missing"] == 0
    bad = run_cli(
        "mixmerge.judge", "judge=recorded", f"judge.path={tmp_path / 'nothing.jsonl'}",
        "hydra.run.dir=run2", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "judge.path=" in bad.stderr and "nothing.jsonl: no such file or folder" in bad.stderr
    assert not (tmp_path / "run2/judge_validation.json").exists()
