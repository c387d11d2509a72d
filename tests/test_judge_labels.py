"""The labelled-judgement format: valid files load by kind and split; each kind of bad line stops
with its file and line number."""

from __future__ import annotations

import json

import pytest

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.labels import BUNDLED_DIR, HarmItem, PairItem, load_labels
from tests.judge_helpers import harm_items, pair_items, write_jsonl, write_labels


def test_a_folder_loads_both_kinds_in_six_languages(tmp_path):
    labels = load_labels(write_labels(tmp_path / "labels"))
    assert len(labels.harm) == len(harm_items()) and len(labels.pairs) == len(pair_items())
    assert all(isinstance(i, HarmItem) for i in labels.harm)
    assert all(isinstance(i, PairItem) for i in labels.pairs)
    assert {i.language for i in labels.harm} == {"en", "fr", "es", "hi", "ar", "ru"}
    test = labels.split("test")
    assert test.harm and test.pairs and all(i.split == "test" for i in test.harm + test.pairs)
    assert len(labels.split("all")) == len(labels)
    assert {i.label for i in labels.pairs} == {"a", "b", "tie"}


def test_a_single_file_may_mix_kinds(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", harm_items(2) + pair_items(2))
    labels = load_labels(path)
    assert len(labels.harm) == len(harm_items(2)) and len(labels.pairs) == 12


def _bad(tmp_path, change, line=3):
    items = harm_items(2)
    change(items[line - 1])
    return write_jsonl(tmp_path / "bad.jsonl", items)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i.pop("label"), "missing field 'label'"),
        (
            lambda i: i.update(label="maybe"),
            "label: expected 'harmful' or 'harmless' (got 'maybe')",
        ),
        (lambda i: i.update(language="de"), "language: unknown language 'de'"),
        (lambda i: i.update(split="val"), "split: expected 'train', 'dev' or 'test'"),
        (lambda i: i.update(kind="vote"), "kind: expected 'harm' or 'pair'"),
        (lambda i: i["source"].pop("model"), "missing field 'source.model'"),
        (lambda i: i.update(labels="harmful"), "unknown field 'labels'"),
    ],
)
def test_a_bad_line_names_the_file_line_and_field(tmp_path, change, message):
    path = _bad(tmp_path, change)
    with pytest.raises(MixmergeError) as err:
        load_labels(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_a_prompt_in_two_splits_is_refused(tmp_path):
    items = harm_items(2)
    # items 0 and 1 share a prompt; move the second to another split
    assert items[0]["prompt_id"] == items[1]["prompt_id"]
    items[1]["split"] = "test" if items[0]["split"] != "test" else "train"
    path = write_jsonl(tmp_path / "leak.jsonl", items)
    with pytest.raises(MixmergeError, match=r"leak.jsonl:2: prompt_id 'rt-en-0' is in split"):
        load_labels(path)


def test_duplicate_ids_and_broken_json_are_refused(tmp_path):
    items = harm_items(2)
    items[4]["id"] = items[0]["id"]
    with pytest.raises(MixmergeError, match=r"dup.jsonl:5: id 'h-en-0-0' already used at .*:1"):
        load_labels(write_jsonl(tmp_path / "dup.jsonl", items))
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(harm_items(1)[0]) + "\n{oops\n", "utf-8")
    with pytest.raises(MixmergeError, match=r"broken.jsonl:2: not valid JSON"):
        load_labels(path)
    # Not UTF-8 (a Latin-1 export) and not an object: one line each, not a traceback.
    path.write_bytes(json.dumps(harm_items(1)[0]).encode() + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(MixmergeError, match=r"broken.jsonl:2: not UTF-8 text"):
        load_labels(path)
    path.write_text(json.dumps(harm_items(1)[0]) + "\n[1, 2]\n", "utf-8")
    with pytest.raises(MixmergeError, match=r"broken.jsonl:2: expected a JSON object"):
        load_labels(path)


def test_missing_paths_and_the_card(tmp_path):
    with pytest.raises(MixmergeError, match="no such file or folder"):
        load_labels(tmp_path / "nowhere.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MixmergeError, match=r"no \*.jsonl file"):
        load_labels(tmp_path / "empty")
    card = (BUNDLED_DIR / "JUDGEMENTS_CARD.md").read_text("utf-8")
    assert "even with a" in card and "harmless" in card and "tie" in card
