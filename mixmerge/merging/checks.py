"""Can these models be merged? Checked from their files before mergekit runs or any output exists.

Architectures come from config.json, tensor names and shapes from the safetensors headers (no
weights are read), vocabularies from the tokenizers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mixmerge.artifacts import ModelRef
from mixmerge.errors import MixmergeError
from mixmerge.model_files import check_model_folder

log = logging.getLogger(__name__)


def label(model: ModelRef) -> str:
    return f"{model.key}={model.reference}"


def check_distinct(models: list[ModelRef]) -> None:
    """mergekit addresses models by path: the same folder twice would be one input, not two."""
    seen: dict[Path, ModelRef] = {}
    for model in models:
        if model.folder in seen:
            raise MixmergeError(
                f"{label(model)}: the same model as {label(seen[model.folder])} ({model.folder})"
            )
        seen[model.folder] = model


def check_readable(models: list[ModelRef]) -> None:
    """Every parent's config, weights headers and tokenizer files read (one line if one does not)."""
    for model in models:
        check_model_folder(model.folder, key=label(model))


def check_paths(models: list[ModelRef]) -> None:
    """mergekit reads `a+b` as a model plus a LoRA and `a@r` as a revision."""
    for model in models:
        if "+" in str(model.folder) or "@" in str(model.folder):
            raise MixmergeError(
                f"{label(model)}: mergekit cannot read a path containing '+' or '@' ({model.folder})"
            )


def read_config(path: Path) -> dict[str, Any]:
    return json.loads((path / "config.json").read_text(encoding="utf-8"))


def architecture(config: dict[str, Any]) -> str:
    names = config.get("architectures") or ["?"]
    return f"{'/'.join(names)} ({config.get('model_type')})"


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor name → shape from the safetensors headers; None when the folder has none."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def vocabulary(path: Path) -> dict[str, int] | None:
    """The tokenizer's token → id map; None when the folder has no loadable tokenizer."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path)).get_vocab()
    except Exception as err:  # any tokenizer that will not load: fall back to vocab_size
        log.warning("No tokenizer loaded from %s (%s); comparing vocab_size only", path, err)
        return None


# Every file a Hugging Face tokenizer is built from (the vocabulary is a function of these alone).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
)


def tokenizer_files(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in TOKENIZER_FILES if (path / name).is_file()}


def same_tokenizer_files(models: list[ModelRef]) -> bool:
    """True when every model carries byte-identical tokenizer files (the usual case: fine-tunes of
    one base), so their vocabularies are equal without loading a tokenizer (~0.3 s each)."""
    first = tokenizer_files(models[0].folder)
    return bool(first) and all(tokenizer_files(m.folder) == first for m in models[1:])


def check_compatible(models: list[ModelRef], tokenizer_source: str | None) -> None:
    """Same architecture, same vocabulary (unless a tokenizer source is set), same tensor shapes."""
    first, rest = models[0], models[1:]
    configs = {m.folder: read_config(m.folder) for m in models}
    for model in rest:
        if architecture(configs[model.folder]) != architecture(configs[first.folder]):
            raise MixmergeError(
                f"{label(model)}: architecture {architecture(configs[model.folder])} differs from "
                f"{label(first)} ({architecture(configs[first.folder])})"
            )

    vocab_sizes = {m.folder: configs[m.folder].get("vocab_size") for m in models}
    shared = same_tokenizer_files(models)
    vocabs = {m.folder: None if shared else vocabulary(m.folder) for m in models}
    vocab_differs = False
    for model in rest:
        a, b = vocabs[first.folder], vocabs[model.folder]
        differs = vocab_sizes[model.folder] != vocab_sizes[first.folder] or (
            a is not None and b is not None and a != b
        )
        vocab_differs = vocab_differs or differs
        if differs and not tokenizer_source:
            sizes = f"{len(b) if b is not None else vocab_sizes[model.folder]} vs {len(a) if a is not None else vocab_sizes[first.folder]} tokens"
            raise MixmergeError(
                f"{label(model)}: vocabulary differs from {label(first)} ({sizes}); set "
                "merge.tokenizer_source=base, union or a model to merge across vocabularies"
            )

    shapes = {m.folder: tensor_shapes(m.folder) for m in models}
    reference = shapes[first.folder]
    if reference is None or any(shapes[m.folder] is None for m in rest):
        log.warning(
            "Some models have no safetensors files; tensor shapes are not checked before merging"
        )
        return
    sizes = {v for v in vocab_sizes.values() if v is not None}
    for model in rest:
        other = shapes[model.folder]
        missing = sorted(set(reference) ^ set(other))
        if missing:
            raise MixmergeError(
                f"{label(model)}: its tensors differ from {label(first)} ({len(missing)} present in only one, "
                f"e.g. {missing[0]}); the architectures do not match"
            )
        for name, shape in reference.items():
            if other[name] == shape:
                continue
            if vocab_differs and _only_vocab_axis(shape, other[name], sizes):
                continue  # mergekit aligns vocabulary axes through the tokenizer source
            raise MixmergeError(
                f"{label(model)}: tensor {name} has shape {list(other[name])} but {list(shape)} in {label(first)}"
            )


def _only_vocab_axis(a: tuple[int, ...], b: tuple[int, ...], vocab_sizes: set[int]) -> bool:
    if len(a) != len(b):
        return False
    return all(x == y or (x in vocab_sizes and y in vocab_sizes) for x, y in zip(a, b, strict=True))
