"""Eval sets: red-team prompts (harm) and general prompts with a reference answer (win rate).

Each comes from the bundled held-out files (`mixmerge/data/bundled/eval/<set>/<lang>.jsonl`) or
from any local file, saved dataset or hub dataset in its own schema, through a column mapping:
`CohereForAI/aya_redteaming` (prompt, language as a name such as "English", harm_category,
global_or_local), Dolly (instruction, context, response, category) or the Aya evaluation suite's
Dolly sets (inputs, targets, language as an ISO 639-3 code).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from mixmerge import LANGUAGES
from mixmerge.data.records import bundled_file, read_jsonl, validate_record
from mixmerge.data.sources import as_dict, load_rows  # the training data's loaders
from mixmerge.errors import MixmergeError

REQUIRED = {"redteam": ("prompt", "language"), "general": ("prompt", "language", "reference")}
# Fields an eval item may carry besides the required ones, mapped from columns of the same name
# unless `columns` says otherwise. `context` (Dolly) is appended to the prompt.
OPTIONAL = {"redteam": ("id", "category", "scope"), "general": ("id", "task", "context")}


def _with_prompt_context(record: dict[str, Any]) -> dict[str, Any]:
    context = record.pop("context", None)
    if isinstance(context, str) and context.strip() and isinstance(record.get("prompt"), str):
        record["prompt"] = f"{record['prompt'].rstrip()}\n\n{context.strip()}"
    return record


def _from_table(
    kind: str, src: DictConfig, key: str, languages: Sequence[str]
) -> list[dict[str, Any]]:
    column_names, table = load_rows(src, key)  # a .jsonl file strictly, line by line
    if column_names is None:  # JSONL: the keys of its objects, in order of first appearance
        column_names = list(
            dict.fromkeys(k for _, row in table if isinstance(row, dict) for k in row)
        )
    columns = {f: f for f in (*REQUIRED[kind], *OPTIONAL[kind])}
    columns.update(as_dict(src.get("columns")))
    names = as_dict(src.get("language_names"))
    fixed = src.get("language")
    for f in REQUIRED[kind]:
        if f == "language" and fixed:
            continue
        if table and columns[f] not in column_names:
            raise MixmergeError(
                f"{key}.columns.{f}: column '{columns[f]}' not in {src.path} (columns: {', '.join(column_names)})"
            )
    rows = []
    found: Counter[str] = Counter()
    for where, row in table:
        if not isinstance(row, dict):
            raise MixmergeError(f"{where}: expected a JSON object, got {type(row).__name__}")
        record = {f: row[c] for f, c in columns.items() if c in row and row[c] is not None}
        language = fixed or record.get("language")
        language = names.get(language, language)
        found[str(language)] += 1
        if isinstance(language, str) and language not in languages:
            continue  # another language (aya_redteaming also holds Serbian and Filipino)
        record["language"] = language
        record = _with_prompt_context(record)
        if "id" in record:
            record["id"] = str(record["id"])
        rows.append(validate_record(record, where, REQUIRED[kind]))
    # An empty file, or one whose language values are none of ours (unmapped names such as
    # "English"): not a silent empty set. (A set without the selected languages, such as the
    # English-only Dolly-15k for fr, is legitimately empty for them.)
    if not rows and not any(lang in LANGUAGES for lang in found):
        seen = ", ".join(f"{lang} ({n})" for lang, n in found.most_common(6)) or "no rows at all"
        raise MixmergeError(
            f"{key}.path={src.path}: no prompts in a known language (found: {seen}); "
            f"map its language values with {key}.language_names or {key}.language"
        )
    return rows


def _subsample(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """At most `limit` rows per language, spread over its tasks/harm categories (a seeded shuffle
    within each, then taking from each in turn), kept in file order: the same settings give the
    same prompts, so cached generations are reused."""
    if limit is None:
        return rows
    groups: dict[str, dict[str, list[int]]] = {}
    for i, row in enumerate(rows):
        group = str(row.get("category") or row.get("task") or "")
        groups.setdefault(row["language"], {}).setdefault(group, []).append(i)
    keep: set[int] = set()
    for lang, by_group in groups.items():
        queues = []
        for group in sorted(by_group):
            indices = list(by_group[group])
            random.Random(f"{seed}-{lang}-{group}").shuffle(indices)
            queues.append(indices)
        picked: list[int] = []
        while len(picked) < limit and any(queues):
            picked.extend(q.pop(0) for q in queues if q)
        keep.update(picked[:limit])
    return [row for i, row in enumerate(rows) if i in keep]


SPLITS = ("all", "dev", "report")


def check_split(evalset: DictConfig) -> tuple[str, float, int]:
    """`evalset.split` (all | dev | report), `evalset.dev_fraction` and `evalset.split_seed`."""
    split = str(evalset.get("split", "all"))
    if split not in SPLITS:
        raise MixmergeError(f"evalset.split={split}: expected one of {', '.join(SPLITS)}")
    fraction = evalset.get("dev_fraction", 0.5)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise MixmergeError(
            f"evalset.dev_fraction={fraction}: expected a number strictly between 0 and 1 "
            "(both the dev and the report split must hold prompts)"
        )
    seed = evalset.get("split_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MixmergeError(f"evalset.split_seed={seed}: expected an integer")
    return split, float(fraction), seed


def split_of(items: list[dict[str, Any]], fraction: float, seed: int) -> dict[str, str]:
    """Item id → 'dev' or 'report': per language, the items ranked by a seeded hash of their id,
    the first round(n·fraction) of them dev. Depends only on the ids, never on file order, limits
    or the other languages, so the two splits are disjoint by construction and stable."""
    by_language: dict[str, list[str]] = {}
    for item in items:
        by_language.setdefault(item["language"], []).append(item["id"])
    out: dict[str, str] = {}
    for ids in by_language.values():
        ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
        n_dev = round(len(ranked) * fraction)
        out.update({i: "dev" if rank < n_dev else "report" for rank, i in enumerate(ranked)})
    return out


def load_eval_set(
    kind: str,
    src: DictConfig,
    languages: Sequence[str],
    limit: int | None = None,
    seed: int = 0,
    split: str = "all",
    dev_fraction: float = 0.5,
    split_seed: int = 0,
) -> list[dict[str, Any]]:
    """The items of one eval set (kind 'redteam' or 'general') for the selected languages.

    Every item has id, language, set, task and prompt (general items also a reference); ids are
    made up as `<lang>-<set>-<n>` (n counting the whole file) where the source has none, and must
    be unique. `split` keeps the dev or the report part (see `split_of`); `limit` then samples
    within it.
    """
    key = f"evalset.{kind}"
    if src.source == "bundled":
        rows = [
            r
            for lang in languages
            for r in read_jsonl(bundled_file(f"eval/{kind}", lang), REQUIRED[kind])
        ]
    elif src.source in ("path", "hub"):
        if not src.get("path"):
            raise MixmergeError(f"{key}.path: required when {key}.source={src.source}")
        rows = _from_table(kind, src, key, languages)
    else:
        raise MixmergeError(f"{key}.source={src.source}: expected bundled, path or hub")
    counters: Counter[str] = Counter()
    items = []
    for row in rows:
        counters[row["language"]] += 1
        item_id = row.get("id") or f"{row['language']}-{kind}-{counters[row['language']]:04d}"
        task = row.get("task") if kind == "general" else row.get("category")
        items.append({**row, "id": item_id, "set": kind, "task": task or kind})
    duplicates = [i for i, n in Counter(item["id"] for item in items).items() if n > 1]
    if duplicates:
        raise MixmergeError(
            f"{key}: duplicate ids {', '.join(sorted(duplicates)[:5])} (ids must be unique)"
        )
    if split != "all":
        part = split_of(items, dev_fraction, split_seed)
        items = [item for item in items if part[item["id"]] == split]
    return _subsample(items, limit, seed)
