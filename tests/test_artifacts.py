"""The artifact models (mixmerge/artifacts.py): older files with extra keys still load unchanged,
a wrong shape is one line naming the file and the field, and a writer cannot write a wrong shape."""

from __future__ import annotations

import json

import pytest

from mixmerge.artifacts import EvalResults, Provenance, read_artifact
from mixmerge.errors import MixmergeError
from mixmerge.lineage import describe
from mixmerge.provenance import read_provenance, write_provenance

OLD_TRAIN = {
    "kind": "train",
    "objective": "sft",
    "base_model": "tiny",
    "mixture": {"safety_ratio": 1, "languages": ["en", "fr"], "an_old_key": [1, 2]},
    "something_new": {"a": 1},
}


def test_extra_keys_are_kept_and_nothing_is_added(tmp_path):
    (tmp_path / "mixmerge.json").write_text(json.dumps(OLD_TRAIN))
    assert read_provenance(tmp_path) == OLD_TRAIN
    assert describe(read_artifact(Provenance, tmp_path / "mixmerge.json")).languages == ("en", "fr")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"objective": "sft"}, "malformed mixmerge.json: 'kind' is missing"),
        (
            {"kind": "train", "parent": "tiny"},
            "malformed mixmerge.json: 'parent' is 'tiny', expected",
        ),
        (
            {"kind": "merge", "parents": [{"path": 3}]},
            "malformed mixmerge.json: 'parents.0.path' is 3",
        ),
    ],
)
def test_wrong_provenance_is_one_line_naming_file_and_field(tmp_path, content, message):
    (tmp_path / "mixmerge.json").write_text(json.dumps(content))
    with pytest.raises(MixmergeError) as err:
        read_provenance(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'mixmerge.json'}: {message}")
    assert "\n" not in str(err.value)


def test_results_need_the_rates_the_report_reads(tmp_path):
    path = tmp_path / "eval_results.json"
    good = {
        "model": {"path": "/m"},
        "average": {"harm_change_pct": -10.0, "win_rate_pct": None},
        "languages": {"en": {"harm_change_pct": -10, "win_rate_pct": None, "n_redteam": 2}},
    }
    path.write_text(json.dumps(good))
    assert read_artifact(EvalResults, path).as_dict() == good
    path.write_text(json.dumps({**good, "languages": {"en": {"harm_change_pct": "low"}}}))
    with pytest.raises(MixmergeError, match=r"'languages\.en\.harm_change_pct' is 'low'"):
        read_artifact(EvalResults, path)


def test_a_writer_cannot_write_a_wrong_shape(tmp_path):
    with pytest.raises(MixmergeError, match="'kind' is 'guess'"):
        write_provenance(tmp_path, "guess", name="x")
    assert not (tmp_path / "mixmerge.json").exists()
