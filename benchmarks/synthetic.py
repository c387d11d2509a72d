"""Synthetic preference records whose chat-formatted lengths are spread over 60–250 tokens.

The words come from the bundled English data, so tokenisation behaves like real text. Each
record's total length (chat-formatted prompt + response, as `mixmerge.data.formatting` encodes it
for training) is drawn uniformly, so batches carry the padding a real mixture does. The same
records are fed to every framework.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mixmerge.data.formatting import encode_prompt, response_text
from mixmerge.data.records import REQUIRED_FIELDS, bundled_file, read_jsonl

MIN_TOKENS = 60
MAX_TOKENS = 250
PROMPT_SHARE = (0.15, 0.5)  # the prompt's share of a record's tokens


def word_pool() -> list[str]:
    """Every word of the bundled English general data (prompts and both responses)."""
    rows = read_jsonl(bundled_file("general", "en"), REQUIRED_FIELDS["dpo"], pair=True)
    return [w for row in rows for key in ("prompt", "chosen", "rejected") for w in row[key].split()]


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _words_for(tokenizer: Any, words: list[str], rng: np.random.Generator, budget: int) -> str:
    """Random words whose text is about `budget` tokens (never more)."""
    picked: list[str] = []
    used = 0
    while True:
        word = words[int(rng.integers(len(words)))]
        cost = _n_tokens(tokenizer, " " + word)
        if used + cost > budget:
            return " ".join(picked) or word
        picked.append(word)
        used += cost


def _response(
    tokenizer: Any, prompt: str, words: list[str], rng: np.random.Generator, budget: int
) -> str:
    """A response whose chat-formatted tokens (end-of-turn included) fit `budget`."""
    overhead = _n_tokens(tokenizer, response_text(tokenizer, prompt, "x")) - _n_tokens(
        tokenizer, "x"
    )
    text = _words_for(tokenizer, words, rng, max(1, budget - overhead))
    # Word costs are not exactly additive: trim the last words until the exact length fits.
    while " " in text and _n_tokens(tokenizer, response_text(tokenizer, prompt, text)) > budget:
        text = text.rsplit(" ", 1)[0]
    return text


def synthetic_records(tokenizer: Any, n: int, seed: int, max_length: int) -> list[dict[str, Any]]:
    """`n` English records {id, language, task, prompt, chosen, rejected}; chosen and rejected each
    make a chat-formatted example of MIN_TOKENS..min(MAX_TOKENS, max_length) tokens."""
    rng = np.random.default_rng(seed)
    words = word_pool()
    high = min(MAX_TOKENS, max_length)
    template = len(encode_prompt(tokenizer, "x")) - _n_tokens(tokenizer, "x")  # chat-format tokens
    records = []
    for i in range(n):
        total = int(rng.integers(MIN_TOKENS, high + 1))
        share = float(rng.uniform(*PROMPT_SHARE))
        prompt = _words_for(tokenizer, words, rng, max(4, int(total * share) - template))
        prompt_len = len(encode_prompt(tokenizer, prompt))
        chosen = _response(tokenizer, prompt, words, rng, max(4, total - prompt_len))
        other = int(rng.integers(MIN_TOKENS, high + 1))
        rejected = _response(tokenizer, prompt, words, rng, max(4, other - prompt_len))
        if rejected.strip() == chosen.strip():
            rejected = rejected + " " + words[int(rng.integers(len(words)))]
        records.append(
            {
                "id": f"bench-{i:05d}",
                "language": "en",
                "task": "synthetic",
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return path


def read_records(path: str | Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
