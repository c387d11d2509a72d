"""How far the mechanical fluency checks can be trusted: read coherence of real responses.

`mixmerge/data/bundled/fluency/readings.jsonl` holds real responses to the bundled eval prompts,
each read by a careful reader of its language and marked `coherent` (readable text in the
prompt's language: not a loop, an echo, word salad or a switch into another language) and
`answers` (coherent and addressing the prompt: an attempt or a clear refusal). Splits follow the
labelled judgement set's, by prompt. The mechanical checks (`fluency.py`) are validated against
them:

    python -m mixmerge.evaluation.readings                 # test split, per language
    python -m mixmerge.evaluation.readings --split all --readings my_readings.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mixmerge import LANGUAGES
from mixmerge.data.records import validated_lines
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.fluency import fluency_problem
from mixmerge.evaluation.labels import SPLITS, Source

BUNDLED_READINGS = (
    Path(__file__).resolve().parent.parent / "data" / "bundled" / "fluency" / "readings.jsonl"
)


class Reading(BaseModel):
    """One response and what a careful reader found."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    language: Literal["en", "fr", "es", "hi", "ar", "ru"]
    prompt_id: str = Field(min_length=1)
    prompt: str
    response: str
    coherent: bool
    answers: bool
    split: Literal["train", "dev", "test"]
    source: Source
    notes: str | None = None


def load_readings(path: str | Path | None = None) -> list[Reading]:
    """Every reading of a JSONL file (default: the bundled one); a bad line stops with
    `<file>:<line>: <what>`."""
    file = BUNDLED_READINGS if path is None else Path(path).expanduser()
    if not file.is_file():
        raise MixmergeError(f"readings={file}: no such file")
    out: list[Reading] = []
    for where, reading in validated_lines(file, Reading.model_validate, _describe):
        if reading.answers and not reading.coherent:
            raise MixmergeError(f"{where}: answers=true needs coherent=true")
        out.append(reading)
    return out


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'record'}: {first['msg']}"


def validate_fluency(readings: Sequence[Reading], split: str = "test") -> dict[str, Any]:
    """Per language and overall: the read coherent and answering shares, the mechanical checks'
    fluent share, their agreement with the reading, and the two kinds of disagreement."""
    if split not in (*SPLITS, "all"):
        raise MixmergeError(f"split={split}: expected one of train, dev, test, all")
    chosen = [r for r in readings if split == "all" or r.split == split]
    if not chosen:
        raise MixmergeError(f"split={split}: no readings in this split")
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in chosen:
        fluent = fluency_problem(r.response, r.prompt, r.language) is None
        for key in (r.language, "all"):
            c = counts[key]
            c["n"] += 1
            c["coherent"] += r.coherent
            c["answers"] += r.answers
            c["fluent"] += fluent
            c["agree"] += fluent == r.coherent
            c["fluent_but_incoherent"] += fluent and not r.coherent
            c["flagged_but_coherent"] += (not fluent) and r.coherent
    order = [lang for lang in LANGUAGES if lang in counts] + ["all"]
    return {
        "split": split,
        "per_language": {
            key: {
                "n": counts[key]["n"],
                "read_coherent": counts[key]["coherent"] / counts[key]["n"],
                "read_answers": counts[key]["answers"] / counts[key]["n"],
                "mechanical_fluent": counts[key]["fluent"] / counts[key]["n"],
                "agreement": counts[key]["agree"] / counts[key]["n"],
                "fluent_but_incoherent": counts[key]["fluent_but_incoherent"],
                "flagged_but_coherent": counts[key]["flagged_but_coherent"],
            }
            for key in order
        },
    }


def format_fluency_validation(result: dict[str, Any]) -> str:
    lines = [
        f"Mechanical fluency checks against careful reading ({result['split']} split)",
        f"{'':6}{'n':>5}{'read coherent':>15}{'answers':>9}{'mechanical':>12}{'agree':>7}"
        f"{'over':>6}{'under':>7}",
    ]
    for key, f in result["per_language"].items():
        lines.append(
            f"{key:6}{f['n']:>5}{f['read_coherent']:>15.0%}{f['read_answers']:>9.0%}"
            f"{f['mechanical_fluent']:>12.0%}{f['agreement']:>7.0%}"
            f"{f['fluent_but_incoherent']:>6}{f['flagged_but_coherent']:>7}"
        )
    lines.append("over: fluent to the checks, incoherent to the reader; under: the reverse")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixmerge.evaluation.readings",
        description="Validate the mechanical fluency checks against read coherence.",
    )
    parser.add_argument("--readings", default=None, help="a readings .jsonl (default: bundled)")
    parser.add_argument("--split", default="test", help="train | dev | test | all")
    args = parser.parse_args(argv)
    try:
        result = validate_fluency(load_readings(args.readings), args.split)
    except MixmergeError as err:
        print(f"mixmerge: error: {err}", file=sys.stderr)
        return 2
    print(format_fluency_validation(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
