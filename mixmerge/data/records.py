"""Reading and validating records: every problem is reported as `file:line: what was expected`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from mixmerge import LANGUAGES
from mixmerge.errors import MixmergeError

BUNDLED_DIR = Path(__file__).parent / "bundled"

# Fields every training record needs, per objective; optional fields are kept when present.
REQUIRED_FIELDS = {
    "sft": ("prompt", "chosen", "language"),
    "dpo": ("prompt", "chosen", "rejected", "language"),
}
OPTIONAL_FIELDS = ("id", "task", "category", "scope", "rejected")


def validate_record(
    record: Any, where: str, required: Iterable[str], pair: bool = False
) -> dict[str, Any]:
    """Check one record and return its known fields; raise MixmergeError naming `where` otherwise."""
    if not isinstance(record, dict):
        raise MixmergeError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in required:
        if field not in record or record[field] is None:
            raise MixmergeError(
                f"{where}: field '{field}' is missing (expected a non-empty string)"
            )
        value = record[field]
        if not isinstance(value, str):
            raise MixmergeError(
                f"{where}: field '{field}' must be a string, got {type(value).__name__}"
            )
        if not value.strip():
            raise MixmergeError(f"{where}: field '{field}' is empty (expected a non-empty string)")
    if "language" in record and record["language"] not in LANGUAGES:
        raise MixmergeError(
            f"{where}: language '{record['language']}' is not one of {' '.join(LANGUAGES)}"
        )
    if pair and record["chosen"].strip() == record["rejected"].strip():
        raise MixmergeError(
            f"{where}: 'chosen' and 'rejected' are identical (a preference pair needs two different responses)"
        )
    return {
        k: record[k] for k in (*required, *OPTIONAL_FIELDS) if k in record and record[k] is not None
    }


def read_jsonl(
    path: str | Path, required: Iterable[str], pair: bool = False
) -> list[dict[str, Any]]:
    """Read a JSONL file of records, validating each one."""
    path = Path(path)
    if not path.is_file():
        raise MixmergeError(f"{path}: data file not found")
    required = tuple(required)
    return [validate_record(record, where, required, pair) for where, record in json_lines(path)]


def json_lines(path: Path) -> list[tuple[str, Any]]:
    """[(`file:line`, parsed value)] for every non-blank line of a JSONL file; a line that is not
    UTF-8 text or not JSON (a file cut off mid-line, a binary or Latin-1 file) is one error naming
    the file and line."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MixmergeError(f"{path}: unreadable ({err.strerror or err})") from None
    rows = []
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MixmergeError(
                f"{where}: not UTF-8 text (byte {err.start} of the line); save the file as UTF-8"
            ) from None
        if not line.strip():
            continue
        try:
            rows.append((where, json.loads(line)))
        except json.JSONDecodeError as err:
            raise MixmergeError(f"{where}: not valid JSON ({err.msg})") from None
    return rows


T = TypeVar("T")


def validated_lines(
    path: Path, validate: Callable[[dict[str, Any]], T], describe: Callable[[ValidationError], str]
) -> list[tuple[str, T]]:
    """[(`file:line`, validated record)] for every non-blank line of a JSONL file of objects, each
    checked by `validate` (a pydantic validator); the first bad line stops with `file:line: what`,
    where `describe` words a validation error."""
    out: list[tuple[str, T]] = []
    for where, value in json_lines(path):
        if not isinstance(value, dict):
            raise MixmergeError(f"{where}: expected a JSON object")
        try:
            out.append((where, validate(value)))
        except ValidationError as err:
            raise MixmergeError(f"{where}: {describe(err)}") from None
    return out


def bundled_file(kind: str, language: str) -> Path:
    """Path of a bundled data file: kind is 'general', 'safety', 'eval/redteam' or 'eval/general'."""
    return BUNDLED_DIR / kind / f"{language}.jsonl"
