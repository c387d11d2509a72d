"""The labelled judgement set: real model outputs labelled by careful reading (guidelines in
mixmerge/data/bundled/judgements/JUDGEMENTS_CARD.md), one JSON record per line.

Two kinds of record, told apart by `kind`:
- harm: a red-team prompt and one response, labelled `harmful` or `harmless`;
- pair: a general prompt and two responses, labelled `a`, `b` (that one is better) or `tie`.

Every record carries a `split` (train/dev/test). Splits are disjoint by prompt: a `prompt_id`
in two splits would let a judge trained on one split be scored on the same prompt, so loading
refuses it. This module is the one definition of the format; every reader goes through it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mixmerge import LANGUAGES
from mixmerge.data.records import validated_lines
from mixmerge.errors import MixmergeError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "bundled" / "judgements"
HARM_FILE = "harm.jsonl"
PAIRS_FILE = "pairs.jsonl"
SPLITS = ("train", "dev", "test")
Split = Literal["train", "dev", "test"]


class Source(BaseModel):
    """Where a response came from: the model that wrote it and how it was decoded."""

    model_config = ConfigDict(extra="allow", frozen=True)
    model: str = Field(min_length=1)
    decoding: str = Field(min_length=1)


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    language: str
    prompt_id: str = Field(min_length=1)
    prompt: str
    split: Split
    source: Source
    notes: str | None = None  # the labeller's reason, if written down

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"unknown language '{value}' (expected one of {' '.join(LANGUAGES)})")
        return value


class HarmItem(_Item):
    """A red-team prompt, one response and its label."""

    kind: Literal["harm"]
    response: str
    label: Literal["harmful", "harmless"]


class PairItem(_Item):
    """A general prompt, two responses and which is better (a, b) or neither clearly (tie)."""

    kind: Literal["pair"]
    response_a: str
    response_b: str
    reference: str | None = None
    label: Literal["a", "b", "tie"]


LabelledItem = Annotated[HarmItem | PairItem, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[HarmItem | PairItem] = TypeAdapter(LabelledItem)


@dataclass
class LabelSet:
    """The labelled items of one or more files, as loaded (every split), in file order."""

    harm: list[HarmItem] = field(default_factory=list)
    pairs: list[PairItem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def split(self, which: str) -> LabelSet:
        """Only the items of one split (`all` keeps everything)."""
        if which == "all":
            return self
        return LabelSet(
            [i for i in self.harm if i.split == which],
            [i for i in self.pairs if i.split == which],
            self.files,
        )

    def __len__(self) -> int:
        return len(self.harm) + len(self.pairs)


def _describe(err: ValidationError) -> str:
    """The first problem of a record, in the words of the format (field name and what was expected)."""
    first = err.errors()[0]
    # The discriminated union puts the kind first in the location ("harm", "label"); drop it.
    loc = [str(p) for p in first["loc"] if p not in ("harm", "pair")]
    where = ".".join(loc) or "record"
    kind = first["type"]
    if kind == "missing":
        return f"missing field '{where}'"
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return "kind: expected 'harm' or 'pair'"
    if kind == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        return f"{where}: expected {expected} (got {first.get('input')!r})"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}"


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if not found:
            raise MixmergeError(f"labels.path={path}: no *.jsonl file in this folder")
        return found
    if not path.is_file():
        raise MixmergeError(f"labels.path={path}: no such file or folder")
    return [path]


def load_labels(path: str | Path | None = None) -> LabelSet:
    """Every labelled item of a JSONL file, or of every *.jsonl in a folder (default: the bundled
    set), validated line by line; ids unique and splits disjoint by prompt across all files."""
    root = BUNDLED_DIR if path is None else Path(path).expanduser()
    if path is None and not any((root / f).is_file() for f in (HARM_FILE, PAIRS_FILE)):
        raise MixmergeError(
            f"labels.path: no bundled labelled judgements yet ({root}/{HARM_FILE}, {PAIRS_FILE}); "
            "pass labels.path=<your labelled .jsonl file or folder>"
        )
    labels = LabelSet()
    seen_ids: dict[str, str] = {}
    prompt_split: dict[str, tuple[str, str]] = {}
    for file in _files(root):
        for where, item in validated_lines(file, _ADAPTER.validate_python, _describe):
            if item.id in seen_ids:
                raise MixmergeError(f"{where}: id '{item.id}' already used at {seen_ids[item.id]}")
            seen_ids[item.id] = where
            # Prompt ids are namespaced by kind: a red-team and a general prompt never collide.
            key = f"{item.kind}:{item.prompt_id}"
            first = prompt_split.setdefault(key, (item.split, where))
            if first[0] != item.split:
                raise MixmergeError(
                    f"{where}: prompt_id '{item.prompt_id}' is in split '{item.split}' here and in "
                    f"'{first[0]}' at {first[1]} (splits must be disjoint by prompt)"
                )
            (labels.harm if isinstance(item, HarmItem) else labels.pairs).append(item)
        labels.files.append(str(file))
    return labels


def check_split(split: str) -> str:
    if split not in (*SPLITS, "all"):
        raise MixmergeError(f"labels.split={split}: expected one of train, dev, test, all")
    return split


def dump_items(items: Sequence[HarmItem | PairItem]) -> str:
    """JSONL text of items (for tests and tools that write labelled files)."""
    return "".join(
        json.dumps(i.model_dump(exclude_none=True), ensure_ascii=False) + "\n" for i in items
    )
