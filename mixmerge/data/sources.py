"""Data sources: the bundled corpus, or any local file, saved dataset or hub dataset with a column mapping."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from omegaconf import DictConfig, OmegaConf

from mixmerge.data.records import (
    REQUIRED_FIELDS,
    bundled_file,
    json_lines,
    read_jsonl,
    validate_record,
)
from mixmerge.errors import MixmergeError


def load_source(
    src: DictConfig, key: str, languages: Sequence[str], objective: str
) -> list[dict[str, Any]]:
    """Load the records of one source (data.general or data.safety) for the selected languages."""
    required = REQUIRED_FIELDS[objective]
    pair = objective == "dpo"
    if src.source == "bundled":
        # One bundled set, or several read one after the other (e.g. [general, instruct]).
        names = src.bundled_name
        names = [names] if isinstance(names, str) else list(names or [])
        if not names or not all(isinstance(n, str) and n for n in names):
            raise MixmergeError(
                f"{key}.bundled_name={src.bundled_name}: expected a bundled set's name or a "
                "non-empty list of names (e.g. general, or [general, instruct])"
            )
        rows: list[dict[str, Any]] = []
        for lang in languages:
            for name in names:
                rows.extend(read_jsonl(bundled_file(name, lang), required, pair))
        return rows
    if src.source in ("path", "hub"):
        if not src.get("path"):
            raise MixmergeError(f"{key}.path: required when {key}.source={src.source}")
        return [
            r
            for r in _map_columns(load_rows(src, key), src, key, required, pair)
            if r["language"] in languages
        ]
    raise MixmergeError(f"{key}.source={src.source}: expected bundled, path or hub")


def load_rows(src: DictConfig, key: str) -> tuple[list[str] | None, list[tuple[str, Any]]]:
    """(column names or None, [(where, row)]): JSONL files keep `file:line`, other sources `[row i]`."""
    path = Path(str(src.path)).expanduser()
    if path.is_file() and path.suffix == ".jsonl":
        return None, json_lines(path)  # each row is checked with its file:line instead
    table = load_table(src, key)
    return table.column_names, [(f"{src.path}[row {i}]", row) for i, row in enumerate(table)]


def load_table(src: DictConfig, key: str) -> datasets.Dataset:
    """A local JSON/JSONL/Parquet/CSV file, a `save_to_disk` folder, or a hub dataset id."""
    ref = str(src.path)
    path = Path(ref).expanduser()
    split = src.get("split") or "train"
    try:
        if path.is_dir() and any(
            (path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")
        ):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise MixmergeError(f"{key}.split={split}: {path} has splits {sorted(loaded)}")
                loaded = loaded[split]
            return loaded
        if path.is_file():
            fmt = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(
                path.suffix
            )
            if fmt is None:
                raise MixmergeError(
                    f"{key}.path={ref}: unsupported file type {path.suffix} (use .jsonl, .json, .parquet, .csv)"
                )
            return datasets.load_dataset(fmt, data_files=str(path), split="train")
        if src.source == "path":
            raise MixmergeError(f"{key}.path={ref}: no such file or folder")
        return datasets.load_dataset(ref, src.get("name"), split=split)
    except MixmergeError:
        raise
    except Exception as err:  # datasets raises many types; the user needs the first line
        raise MixmergeError(
            f"{key}.path={ref}: cannot load dataset ({str(err).splitlines()[0]})"
        ) from err


def as_dict(node: Any) -> dict[str, Any]:
    """A config mapping (or None) as a plain dict, interpolations resolved."""
    return (
        OmegaConf.to_container(node, resolve=True)
        if OmegaConf.is_config(node)
        else dict(node or {})
    )


def _text(value: Any) -> Any:
    """A response given as a chat (list of messages) becomes the last assistant message's text."""
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return value[-1]["content"]
    return value


def _map_columns(
    loaded: tuple[list[str] | None, list[tuple[str, Any]]],
    src: DictConfig,
    key: str,
    required: Sequence[str],
    pair: bool,
) -> list[dict[str, Any]]:
    column_names, table = loaded
    columns = {field: field for field in (*required, "task", "category", "id")}
    columns.update(as_dict(src.get("columns")))
    language_names = as_dict(src.get("language_names"))
    fixed_language = src.get("language")
    for field in required:
        if field == "language" and fixed_language:
            continue
        if column_names is not None and columns[field] not in column_names:
            raise MixmergeError(
                f"{key}.columns.{field}: column '{columns[field]}' not in dataset {src.path} "
                f"(columns: {', '.join(column_names)})"
            )
    rows = []
    for where, row in table:
        if not isinstance(row, dict):
            raise MixmergeError(f"{where}: expected a JSON object, got {type(row).__name__}")
        record = {field: _text(row[col]) for field, col in columns.items() if col in row}
        if fixed_language:
            record["language"] = fixed_language
        record["language"] = language_names.get(record.get("language"), record.get("language"))
        rows.append(validate_record(record, where, required, pair))
    return rows
