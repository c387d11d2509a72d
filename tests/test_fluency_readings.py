"""The read-coherence set and the validation of the mechanical fluency checks against it: the
bundled readings load and cover every language and split, the figures are counted as the checks
and the readings say, and a bad line is one clear error."""

from __future__ import annotations

import json

import pytest

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.fluency import fluency_problem
from mixmerge.evaluation.readings import load_readings, main, validate_fluency


def _reading(**change):
    base = {
        "id": "r1", "language": "en", "prompt_id": "en-dolly-001", "prompt": "Why is the sky blue?",
        "response": "Sunlight scatters off air molecules, and blue light scatters most.",
        "coherent": True, "answers": True, "split": "test",
        "source": {"model": "m", "decoding": "greedy"},
    }  # fmt: skip
    return {**base, **change}


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_the_bundled_readings_cover_every_language_and_split_disjoint_by_prompt():
    readings = load_readings()
    assert {r.language for r in readings} == {"en", "fr", "es", "hi", "ar", "ru"}
    split_of: dict[str, set[str]] = {}
    for r in readings:
        split_of.setdefault(r.prompt_id, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert {r.split for r in readings} == {"train", "dev", "test"}


def test_figures_count_what_the_checks_and_the_readers_say(tmp_path):
    loop = "I like tea. I like tea. I like tea."
    rows = [
        _reading(id="a"),  # fluent, coherent: agree
        _reading(id="b", response=loop, coherent=False, answers=False),  # loop, incoherent: agree
        _reading(id="c", response="Blue sky is of the sky blue when the.", coherent=False,
                 answers=False),  # word salad the checks pass: over
        _reading(id="d", response=loop, language="en"),  # reader kept it: under
        _reading(id="e", split="train", coherent=False, answers=False),  # other split
    ]  # fmt: skip
    assert fluency_problem(loop, "q", "en") == "loop"
    figures = validate_fluency(load_readings(_write(tmp_path / "r.jsonl", rows)), "test")
    every = figures["per_language"]["all"]
    assert every["n"] == 4 and every["agreement"] == 0.5
    assert (every["fluent_but_incoherent"], every["flagged_but_coherent"]) == (1, 1)
    assert every["read_coherent"] == 0.5 and every["mechanical_fluent"] == 0.5
    assert list(figures["per_language"]) == ["en", "all"]
    with pytest.raises(MixmergeError, match="split=dev: no readings"):
        validate_fluency(load_readings(tmp_path / "r.jsonl"), "dev")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coherent": "maybe"}, ":1: coherent:"),
        ({"language": "de"}, ":1: language:"),
        ({"answers": True, "coherent": False}, ":1: answers=true needs coherent=true"),
        ({"extra": 1}, ":1: extra:"),
    ],
)
def test_a_bad_reading_is_one_line_naming_file_and_line(tmp_path, change, message):
    path = _write(tmp_path / "bad.jsonl", [_reading(**change)])
    with pytest.raises(MixmergeError, match=message):
        load_readings(path)


def test_the_command_prints_the_table_and_exits_2_on_bad_input(tmp_path, capsys):
    assert main(["--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "read coherent" in out and "\nhi " in out and "\nall " in out
    assert main(["--readings", str(tmp_path / "none.jsonl")]) == 2
    assert "mixmerge: error: readings=" in capsys.readouterr().err
