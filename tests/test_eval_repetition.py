"""The DRY penalty on repeats: its arithmetic against text-generation-webui's definition, the exact
pick after penalties, and its settings. The decoders with DRY on tiny models: test_eval_decoder."""

from __future__ import annotations

import pytest
import torch

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.generation import (
    Decoding,
    decoding_key,
    generation_fingerprint,
)
from mixmerge.evaluation.repetition import (
    Dry,
    dry_penalties,
    pick_penalized,
)

DRY = Dry(multiplier=0.8, base=1.75, allowed_length=2, breakers=frozenset({9}))


def test_a_repeat_penalizes_the_token_that_continued_it():
    # 1 2 3 4 ... 1 2 3: the suffix "1 2 3" (length 3) occurred before, followed by 4.
    pens = dry_penalties([1, 2, 3, 4, 5, 1, 2, 3], DRY)
    assert pens == {4: pytest.approx(0.8 * 1.75 ** (3 - 2))}
    # Length 1 (just "3" again) is under allowed_length 2: nothing.
    assert dry_penalties([3, 4, 5, 3], DRY) == {}
    # The longest match wins for a token that follows several matches.
    pens = dry_penalties([7, 2, 3, 4, 8, 1, 2, 3, 4, 6, 1, 2, 3], DRY)
    assert pens == {4: pytest.approx(0.8 * 1.75**1)}


def test_breakers_end_a_match():
    # A breaker (9) inside the suffix stops the match at it: "9 2 3" matches only "2 3".
    assert dry_penalties([9, 2, 3, 4, 9, 2, 3], DRY) == {4: pytest.approx(0.8)}
    # A breaker that continued the match is penalized like any token (a loop of short lines).
    assert dry_penalties([2, 3, 9, 5, 2, 3], DRY) == {9: pytest.approx(0.8)}
    # The last token a breaker: nothing.
    assert dry_penalties([2, 9, 4, 2, 9], DRY) == {}


def test_a_long_loop_is_penalized_exponentially_up_to_the_cap():
    loop = [1, 2, 3] * 40
    pens = dry_penalties(loop, DRY)
    assert set(pens) == {1} and pens[1] == pytest.approx(0.8 * 1.75 ** (50 - 2))


def test_pick_penalized_is_the_float32_argmax_after_the_penalties_ties_included():
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randint(0, 6, (16, 512), generator=gen) * 0.125).to(torch.bfloat16)
    penalties = [
        {int(logits[r].argmax()): 0.125 * (r % 3), (r * 7) % 512: 0.0625, 5: 1e-9} if r % 4 else {}
        for r in range(16)
    ]
    want = logits.float()
    for r, pens in enumerate(penalties):
        for t, p in pens.items():
            want[r, t] -= p
    got = pick_penalized(logits.clone(), penalties)
    assert torch.equal(got, want.argmax(-1))
    assert any(got[r] != logits[r].float().argmax() for r in range(16))  # penalties mattered


def test_dry_settings_enter_the_fingerprint_only_when_on():
    items = [{"id": "a", "prompt": "p"}]
    off = Decoding(dtype="float32")
    assert "dry_base" not in decoding_key(off)
    # Changing an inactive DRY field changes nothing; turning DRY on does.
    assert generation_fingerprint("m", items, off) == generation_fingerprint(
        "m", items, Decoding(dtype="float32", dry_base=3.0)
    )
    on = Decoding(dtype="float32", dry_multiplier=0.8)
    assert generation_fingerprint("m", items, on) != generation_fingerprint("m", items, off)
    assert generation_fingerprint("m", items, on) != generation_fingerprint(
        "m", items, Decoding(dtype="float32", dry_multiplier=0.8, dry_allowed_length=3)
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dry_multiplier", -1.0, "generation.dry_multiplier=-1.0: expected a number >= 0"),
        ("dry_base", 1.0, "generation.dry_base=1.0: expected a number > 1"),
        ("dry_allowed_length", 0, "generation.dry_allowed_length=0: expected a positive integer"),
        ("dry_breakers", 5, "generation.dry_breakers=5: expected a string"),
    ],
)
def test_bad_dry_settings_are_one_line_errors(field, value, message):
    with pytest.raises(MixmergeError, match=message.replace("(", r"\(")):
        Decoding(**{field: value})
