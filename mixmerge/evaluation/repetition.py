"""DRY ("don't repeat yourself"): a penalty on the tokens that would continue a repeat.

Small models decoded greedily fall into loops: read one by one, most of the default Gemma 3 270M
SFT model's incoherent answers are a sentence said again and again (docs/models.md). A flat
`repetition_penalty` stops the loops but also penalises every word already used; in Hindi, whose
common subwords recur in every sentence, it pushed the model into English clauses (read coherent
4% at 1.2). DRY penalises only continuations of a repeat: if the last L tokens of the response
already occurred, in order, earlier in it, the token that followed them there loses
`multiplier * base ** (L - allowed_length)` from its logit when L >= allowed_length. Sequence
breakers (newline, colon, quote, asterisk by default) end a match, so list and dialogue markup
may repeat.

This is the algorithm of text-generation-webui's `DRYLogitsProcessor` (where DRY originated; also
in llama.cpp, vLLM and SGLang), with three choices of this project, the variant that was read
(docs/models.md): matches are sought in the response only, not the prompt (a model may quote the
passage it is asked to extract from); a breaker is any token whose text contains a breaker
character (Gemma's vocabulary has hundreds, e.g. runs of newlines); and a breaker that would
continue a repeat is penalized like any token (text-generation-webui exempts it, which lets a
short line repeat forever: each newline ends the match before it grows). transformers has no DRY; `ResponseDRY` plugs it into
`model.generate` as a `LogitsProcessor`, and the fast decoder applies the same penalties
(`pick_penalized`) with the same arithmetic, so both decoders give the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

DEFAULT_BREAKERS = '\n:"*'
# As in text-generation-webui: a match is not extended past this many tokens (the penalty is
# already astronomical there, and it bounds the cost of a long repeat).
MAX_MATCH = 50


@dataclass(frozen=True)
class Dry:
    """DRY settings with the breaker characters resolved to a tokenizer's token ids."""

    multiplier: float
    base: float
    allowed_length: int
    breakers: frozenset[int]


def breaker_ids(tokenizer: Any, chars: str) -> frozenset[int]:
    """The ids of every token whose text contains one of `chars`."""
    if not chars:
        return frozenset()
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, text in enumerate(texts) if any(c in text for c in chars))


def dry_penalties(tokens: Sequence[int], dry: Dry) -> dict[int, float]:
    """Token id -> the amount its logit loses after `tokens` (the response so far)."""
    if not tokens:
        return {}
    last = tokens[-1]
    if last in dry.breakers:
        return {}
    lengths: dict[int, int] = {}
    n = len(tokens)
    for i in range(n - 1):  # the last token itself always matches: excluded
        if tokens[i] != last:
            continue
        following = tokens[i + 1]  # may be a breaker: a loop of short lines is a loop too
        length = 1
        while length < MAX_MATCH:
            j = i - length
            if j < 0:
                break
            previous = tokens[n - 1 - length]
            if tokens[j] != previous or previous in dry.breakers:
                break
            length += 1
        if length > lengths.get(following, 0):
            lengths[following] = length
    return {
        token: dry.multiplier * dry.base ** (length - dry.allowed_length)
        for token, length in lengths.items()
        if length >= dry.allowed_length
    }


class ResponseDRY(LogitsProcessor):
    """DRY for `model.generate` on a left-padded batch whose prompts end at column `start`."""

    def __init__(self, dry: Dry, start: int) -> None:
        self.dry = dry
        self.start = start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            for token, penalty in dry_penalties(
                input_ids[row, self.start :].tolist(), self.dry
            ).items():
                scores[row, token] -= penalty
        return scores


def pick_penalized(logits: torch.Tensor, penalties: Sequence[dict[int, float]]) -> torch.Tensor:
    """The greedy next token of each row after subtracting its penalties: the index `generate`
    picks from the float32 copy of `logits` after `ResponseDRY` (the first of equal maxima).

    Without casting all 262,144 logits of a row: the penalized tokens are taken out of the bf16
    row (its maximum is the float32 one: the cast is exact), and their float32 values get the same
    in-place subtraction `ResponseDRY` does, then the two compete. `logits` is overwritten."""
    penalized = []
    for row, pens in enumerate(penalties):
        if pens:
            tokens = torch.tensor(list(pens), dtype=torch.long, device=logits.device)
            scores = logits[row, tokens].float()
            for k, penalty in enumerate(pens.values()):
                scores[k] -= penalty  # the same float32 operation as ResponseDRY's
            logits[row, tokens] = -torch.inf
            penalized.append((row, pens, scores.tolist()))
    best = logits.max(-1)
    indices = best.indices
    for row, pens, scores in penalized:
        value, index = float(best.values[row]), int(indices[row])
        for token, score in zip(pens, scores, strict=True):
            if score > value or (score == value and token < index):
                value, index = score, token
        indices[row] = index
    return indices
