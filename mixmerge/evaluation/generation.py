"""Batched, left-padded, chat-templated generation, with on-disk caching of whole generation runs."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from mixmerge.config import native_dtype
from mixmerge.data.formatting import prompt_text
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.decoder import greedy_decode, packed_linears, transposed_head
from mixmerge.evaluation.repetition import DEFAULT_BREAKERS, Dry, ResponseDRY, breaker_ids
from mixmerge.fingerprints import model_fingerprint, sha256_json
from mixmerge.io import write_text_atomic
from mixmerge.modeling import load_causal_lm, load_tokenizer

log = logging.getLogger(__name__)

# Bump when a change to this module changes what the same settings generate (invalidates caches).
GENERATION_VERSION = 1
OUTPUT_FIELDS = ("id", "language", "set", "task", "prompt", "response")
DECODERS = ("fast", "generate")
# The DRY settings of `Decoding`: they enter a generation's fingerprint only when DRY is on.
DRY_FIELDS = ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_breakers")


@dataclass(frozen=True)
class Decoding:
    """Decoding settings (the `generation` config node)."""

    max_new_tokens: int = 64
    batch_size: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    dtype: str = field(default_factory=native_dtype)
    # Greedy decoding: `fast` (mixmerge.evaluation.decoder: same outputs, less bookkeeping per step)
    # or `generate` (transformers' `model.generate`, the reference). Sampling always uses generate.
    decoder: str = "fast"
    # DRY penalty on continuing a repeat (mixmerge.evaluation.repetition); 0 = off. Applies to
    # both decoders and to sampling.
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_breakers: str = DEFAULT_BREAKERS  # each character ends a match

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise MixmergeError(
                f"generation.max_new_tokens={self.max_new_tokens}: expected a positive integer"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise MixmergeError(
                f"generation.batch_size={self.batch_size}: expected a positive integer"
            )
        if self.do_sample and not self.temperature > 0:
            raise MixmergeError(
                f"generation.temperature={self.temperature}: expected a number > 0 when sampling"
            )
        if not 0 < self.top_p <= 1:
            raise MixmergeError(f"generation.top_p={self.top_p}: expected a number in (0, 1]")
        if self.decoder not in DECODERS:
            raise MixmergeError(
                f"generation.decoder={self.decoder}: expected one of {', '.join(DECODERS)}"
            )
        if not self.dry_multiplier >= 0:
            raise MixmergeError(
                f"generation.dry_multiplier={self.dry_multiplier}: expected a number >= 0 (0 = off)"
            )
        if not self.dry_base > 1:
            raise MixmergeError(f"generation.dry_base={self.dry_base}: expected a number > 1")
        if not isinstance(self.dry_allowed_length, int) or self.dry_allowed_length < 1:
            raise MixmergeError(
                f"generation.dry_allowed_length={self.dry_allowed_length}: expected a positive integer"
            )
        if not isinstance(self.dry_breakers, str):
            raise MixmergeError(
                f"generation.dry_breakers={self.dry_breakers!r}: expected a string of characters"
            )
        if not isinstance(getattr(torch, self.dtype, None), torch.dtype):
            raise MixmergeError(
                f"generation.dtype={self.dtype}: expected a torch dtype such as float32 or bfloat16"
            )


def dry_settings(decoding: Decoding, tokenizer: Any) -> Dry | None:
    """The DRY penalty `decoding` asks for, resolved for `tokenizer`; None when it is off."""
    if not decoding.dry_multiplier:
        return None
    return Dry(
        decoding.dry_multiplier,
        decoding.dry_base,
        decoding.dry_allowed_length,
        breaker_ids(tokenizer, decoding.dry_breakers),
    )


def decoding_key(decoding: Decoding) -> dict[str, Any]:
    """The settings that decide what a decoding generates: the DRY fields only when DRY is on, so
    generations cached before DRY existed stay valid for decodings without it."""
    key = asdict(decoding)
    if not decoding.dry_multiplier:
        for name in DRY_FIELDS:
            del key[name]
    return key


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _generation_config(model: Any, tokenizer: Any, decoding: Decoding) -> Any:
    config = copy.deepcopy(model.generation_config)
    sampling = (
        {"do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p}
        # Greedy: clear the checkpoint's sampling defaults so they neither apply nor warn.
        if decoding.do_sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    config.update(
        max_new_tokens=decoding.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
    )
    # Stop at the model's end tokens and at the tokenizer's (a chat model's end-of-turn token),
    # whichever the checkpoint's generation config happens to list.
    stops = config.eos_token_id
    stops = [] if stops is None else [stops] if isinstance(stops, int) else list(stops)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
        stops.append(tokenizer.eos_token_id)
    config.eos_token_id = stops or None
    return config


def generate_responses(
    model_path: str,
    prompts: Sequence[str],
    decoding: Decoding,
    trust_remote_code: bool = False,
    desc: str = "generating",
) -> list[str]:
    """Responses to `prompts` (plain user turns), in order, generated in left-padded batches."""
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    tokenizer.padding_side = "left"  # decoder-only models continue from the right end of each row
    model = (
        load_causal_lm(model_path, decoding.dtype, trust_remote_code, key="model")
        .to(device())
        .eval()
    )
    config = _generation_config(model, tokenizer, decoding)
    texts = [prompt_text(tokenizer, p) for p in prompts]
    # Longest first, so each batch holds prompts of similar length and padding stays small.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    responses: list[str] = [""] * len(texts)
    torch.manual_seed(decoding.seed)
    fast = not decoding.do_sample and decoding.decoder == "fast"
    stop_ids = set(config.eos_token_id or ())
    dry = dry_settings(decoding, tokenizer)
    with (
        torch.inference_mode(),
        packed_linears(model, decoding.batch_size) if fast else contextlib.nullcontext(),
        transposed_head(model) if fast else contextlib.nullcontext(),
        tqdm(total=len(texts), desc=desc, unit="prompt") as bar,
    ):
        for start in range(0, len(order), decoding.batch_size):
            batch = order[start : start + decoding.batch_size]
            enc = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            enc = {k: v.to(model.device) for k, v in enc.items()}
            start = enc["input_ids"].shape[1]
            if not fast:
                processors = LogitsProcessorList([ResponseDRY(dry, start)] if dry else [])
                out = model.generate(**enc, generation_config=config, logits_processor=processors)
                new_tokens = out[:, start:]
            else:
                new_tokens = greedy_decode(
                    model,
                    enc["input_ids"],
                    enc["attention_mask"],
                    decoding.max_new_tokens,
                    stop_ids,
                    dry,
                )
            for i, text in zip(
                batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
            ):
                responses[i] = text.strip()
            bar.update(len(batch))
    return responses


def write_jsonl_atomic(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows as JSONL through a temporary file and an atomic rename."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _read_cached(path: Path, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    try:
        rows = [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (OSError, json.JSONDecodeError):
        return None
    if [r.get("id") for r in rows] != [i["id"] for i in items]:
        return None  # a cache that does not match is regenerated, never trusted
    return rows


@dataclass
class Generations:
    """A model's responses to the eval items, and where they came from."""

    rows: list[dict[str, Any]]
    fingerprint: str
    cached: bool
    cache_file: str | None


def generation_fingerprint(
    model_fp: str, items: Sequence[dict[str, Any]], decoding: Decoding
) -> str:
    """What determines a generation run: the weights, the prompts, the decoding and the device."""
    return sha256_json(
        {
            "version": GENERATION_VERSION,
            "model": model_fp,
            "prompts": [[i["id"], i["prompt"]] for i in items],
            "decoding": decoding_key(decoding),
            "device": device(),
        }
    )


def cached_generations(
    model_path: str,
    items: Sequence[dict[str, Any]],
    decoding: Decoding,
    cache_dir: str | Path | None,
    trust_remote_code: bool = False,
    desc: str = "generating",
) -> Generations:
    """Generate responses to `items`, or read them from `cache_dir/generations/<fingerprint>.jsonl`
    when the same weights already answered the same prompts with the same decoding."""
    fp = generation_fingerprint(model_fingerprint(model_path, cache_dir), items, decoding)
    cache_file = Path(cache_dir) / "generations" / f"{fp}.jsonl" if cache_dir else None
    if cache_file and cache_file.is_file():
        rows = _read_cached(cache_file, items)
        if rows is not None:
            log.info("%s: reusing cached generations %s", desc, cache_file)
            return Generations(rows, fp, True, str(cache_file))
    responses = generate_responses(
        model_path, [i["prompt"] for i in items], decoding, trust_remote_code, desc
    )
    rows = [
        {**{k: item.get(k) for k in OUTPUT_FIELDS if k != "response"}, "response": r}
        for item, r in zip(items, responses, strict=True)
    ]
    if cache_file:
        write_jsonl_atomic(cache_file, rows)
    return Generations(rows, fp, False, str(cache_file) if cache_file else None)
