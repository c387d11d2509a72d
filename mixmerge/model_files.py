"""Is a model folder readable? Checked from its files before transformers or mergekit touch it.

transformers and mergekit answer a truncated weights file, an empty config.json or a broken
tokenizer.json with a long traceback from deep inside; this reads the same files cheaply (JSON
parses, safetensors headers only, the tokenizer through `tokenizers`) and answers with one line
naming the file and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixmerge.errors import MixmergeError

# JSON files a Hugging Face model folder may hold; each must parse when present.
JSON_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "model.safetensors.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_json_file(file: Path, key: str) -> Any:
    """A JSON file's content, or one line saying why it cannot be read."""
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise MixmergeError(f"{key}: {file}: unreadable ({err.strerror or err})") from err
    if not raw.strip():
        raise MixmergeError(f"{key}: {file}: empty file (expected JSON)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MixmergeError(
            f"{key}: {file}: not UTF-8 text at byte {err.start} (expected JSON)"
        ) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MixmergeError(
            f"{key}: {file}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "truncated or corrupt?"
        ) from err


def check_safetensors(file: Path, key: str) -> None:
    """Read every tensor's header entry (no weights): catches truncated and corrupt files."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                handle.get_slice(name).get_shape()
    except Exception as err:  # SafetensorError, OSError: all mean "cannot read these weights"
        raise MixmergeError(
            f"{key}: {file}: not a readable safetensors file ({_first_line(err)}); truncated or corrupt?"
        ) from err


# Above this size tokenizer.json is only checked at its ends: a full parse of a 262k-token
# tokenizer (33 MB, Gemma 3) takes seconds, about half of loading it, on every load.
FULL_TOKENIZER_CHECK_BYTES = 2_000_000


def check_tokenizer_json(file: Path, key: str) -> None:
    """A small tokenizer.json is loaded with `tokenizers`; a large one must at least begin with
    `{` and end with `}` (catches empty, truncated and binary files without parsing it)."""
    from tokenizers import Tokenizer

    size = file.stat().st_size
    if size == 0:
        raise MixmergeError(f"{key}: {file}: empty file (expected JSON)")
    if size > FULL_TOKENIZER_CHECK_BYTES:
        with file.open("rb") as handle:
            head = handle.read(64).lstrip()
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip()
        if not (head.startswith(b"{") and tail.endswith(b"}")):
            raise MixmergeError(
                f"{key}: {file}: not a JSON object from start to end; truncated or corrupt?"
            )
        return
    try:
        Tokenizer.from_file(str(file))
    except Exception as err:  # tokenizers raises a plain Exception for a malformed tokenizer
        raise MixmergeError(f"{key}: {file}: not a valid tokenizer ({_first_line(err)})") from err


def check_model_folder(
    path: str | Path, key: str = "model", weights: bool = True, tokenizer: bool = True
) -> None:
    """One clear MixmergeError when a local model folder's config, weights or tokenizer files
    cannot be read. Hub ids (not a local folder) are left to transformers."""
    folder = Path(path)
    if not folder.is_dir():
        return
    config = folder / "config.json"
    if weights or config.exists():
        if not config.is_file():
            raise MixmergeError(f"{key}: {config}: missing (not a Hugging Face model folder)")
        if not isinstance(read_json_file(config, key), dict):
            raise MixmergeError(f"{key}: {config}: expected a JSON object")
    for name in JSON_FILES:
        file = folder / name
        if name != "config.json" and file.is_file() and (weights or name in TOKENIZER_FILES):
            read_json_file(file, key)
    if weights:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = set((read_json_file(index, key).get("weight_map") or {}).values())
            for shard in sorted(shards):
                if not (folder / shard).is_file():
                    raise MixmergeError(f"{key}: {index}: names {shard}, which is missing")
        for file in sorted(folder.glob("*.safetensors")):
            check_safetensors(file, key)
    if tokenizer and (folder / "tokenizer.json").is_file():
        check_tokenizer_json(folder / "tokenizer.json", key)
