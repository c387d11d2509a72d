"""Metrics on hand-made cases: harm rate, relative change, win rate, averages, bootstrap intervals."""

from __future__ import annotations

import pytest

from mixmerge.evaluation.judges import combine_orders
from mixmerge.evaluation.metrics import LanguageJudgements, harm_change_pct, rate, summarize


def test_rate_leaves_unparsed_out():
    assert rate([True, False, True, None]) == pytest.approx(2 / 3)
    assert rate([None, None]) is None
    assert rate([]) is None


@pytest.mark.parametrize(
    ("h_model", "h_base", "expected"),
    [
        (0.25, 0.5, -50.0),
        (0.75, 0.5, 50.0),
        (0.5, 0.5, 0.0),
        (0.0, 0.4, -100.0),
        (0.0, 0.0, 0.0),
        (0.2, 0.0, None),
        (None, 0.5, None),
    ],
)
def test_harm_change_pct(h_model, h_base, expected):
    assert harm_change_pct(h_model, h_base) == (
        None if expected is None else pytest.approx(expected)
    )


def test_combine_orders_counts_a_win_only_when_both_orders_agree():
    assert combine_orders(1.0, 1.0) == 1.0
    assert combine_orders(0.0, 0.0) == 0.0
    assert combine_orders(1.0, 0.0) == 0.5  # position bias: each order preferred the first response
    assert combine_orders(1.0, 0.5) == 0.5
    assert combine_orders(None, 1.0) is None


def hand_made() -> dict[str, LanguageJudgements]:
    return {
        # model harmful on 1 of 4, baseline on 2 of 4 → −50 %; wins 1, 1, 0.5, 0 → 62.5 %
        "en": LanguageJudgements(
            [True, False, False, False], [True, True, False, False], [1.0, 1.0, 0.5, 0.0]
        ),
        # 0 of 2 judged harmful (one unparsed) vs 1 of 3 → −100 %; one pairwise judgement unparsed
        "fr": LanguageJudgements([False, None, False], [True, False, False], [1.0, None]),
        # baseline never harmful, model harmful once → change undefined; no general prompts
        "es": LanguageJudgements([True, False], [False, False], []),
    }


def test_summary_per_language_and_averages():
    result = summarize(hand_made(), samples=0)
    en, fr, es = (result["languages"][k] for k in ("en", "fr", "es"))
    assert (
        en["harm_rate"] == 0.25
        and en["baseline_harm_rate"] == 0.5
        and en["harm_change_pct"] == pytest.approx(-50)
    )
    assert en["win_rate"] == 0.625 and en["win_rate_pct"] == 62.5
    assert (en["wins"], en["ties"], en["losses"]) == (2, 1, 1)
    assert fr["harm_rate"] == 0.0 and fr["harm_change_pct"] == pytest.approx(-100)
    assert fr["harm_unparsed"] == 1 and fr["win_unparsed"] == 1 and fr["win_rate"] == 1.0
    assert es["harm_change_pct"] is None and "undefined" in es["harm_change_note"]
    assert es["win_rate"] is None and es["n_general"] == 0
    average = result["average"]
    assert average["harm_change_pct"] == pytest.approx(-75)  # mean of en and fr; es undefined
    assert average["harm_change_pct_languages"] == ["en", "fr"]
    assert average["win_rate"] == pytest.approx((0.625 + 1.0) / 2)
    assert average["harm_rate"] == pytest.approx((0.25 + 0.0 + 0.5) / 3)
    assert result["totals"] == {
        "n_redteam": 9,
        "n_general": 6,
        "harm_unparsed": 1,
        "baseline_harm_unparsed": 0,
        "win_unparsed": 1,
    }


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    data = {
        "en": LanguageJudgements(
            [True] * 6 + [False] * 14, [True] * 12 + [False] * 8, [1.0] * 12 + [0.0] * 6 + [0.5] * 2
        )
    }
    first = summarize(data, samples=500, seed=3)
    assert first == summarize(data, samples=500, seed=3)
    assert first != summarize(data, samples=500, seed=4)
    en = first["languages"]["en"]
    for key in ("harm_rate", "baseline_harm_rate", "harm_change_pct", "win_rate"):
        lo, hi = en[f"{key}_ci"]
        assert lo <= en[key] <= hi and lo < hi
    # one language: the average is that language
    assert first["average"]["win_rate_ci"] == en["win_rate_ci"]
    assert first["bootstrap"] == {"samples": 500, "seed": 3, "confidence": 0.95}


def test_identical_models_have_no_change_and_half_wins():
    same = [True, False, True, False]
    result = summarize({"en": LanguageJudgements(same, list(same), [0.5] * 4)}, samples=200)
    en = result["languages"]["en"]
    assert en["harm_change_pct"] == 0.0 and en["harm_change_pct_ci"] == [0.0, 0.0]
    assert en["win_rate"] == 0.5 and en["win_rate_ci"] == [0.5, 0.5]
