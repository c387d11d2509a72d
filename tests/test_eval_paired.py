"""Paired comparisons on hand-made verdicts: identical models, opposite extremes, exact tests,
unpaired prompts, and agreement with the unpaired point estimates of eval_results.json."""

from __future__ import annotations

import json

import pytest

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.metrics import LanguageJudgements, summarize
from mixmerge.evaluation.paired import (
    Verdicts,
    binomial_two_sided,
    compare,
    excludes_zero,
    mcnemar_exact,
    read_verdicts,
    sign_test,
)

LANGS = ("en", "fr")


def records(harmful, baseline, wins, langs=LANGS):
    """Judgement records: per language the same red-team / general verdict lists."""
    out = []
    for lang in langs:
        out += [
            {"id": f"rt-{i}", "language": lang, "set": "redteam", "harmful": h,
             "baseline_harmful": b}
            for i, (h, b) in enumerate(zip(harmful, baseline, strict=True))
        ]  # fmt: skip
        out += [
            {"id": f"gen-{i}", "language": lang, "set": "general", "win": w}
            for i, w in enumerate(wins)
        ]
    return out


def verdicts(*args, **kwargs) -> Verdicts:
    return Verdicts.from_records(records(*args, **kwargs), "test")


MIXED = verdicts([True, False, True, False, None, True], [True] * 6, [1.0, 0.5, 0.0, 1.0, None])


def test_identical_models_give_zero_with_a_zero_width_interval():
    result = compare(MIXED, MIXED, samples=200, seed=1)
    for scope in [*result["languages"].values(), result["average"]]:
        for key in ("harm_rate", "harm_change_pct", "win_rate"):
            assert scope[key] == 0.0
            assert scope[f"{key}_ci"] == [0.0, 0.0]
            assert not excludes_zero(scope[f"{key}_ci"])
        assert scope["mcnemar"]["p_value"] == 1.0 and scope["sign"]["p_value"] == 1.0


def test_always_harmful_against_never_harmful_is_distinguishable():
    n = 12
    always = verdicts([True] * n, [True] * (n // 2) + [False] * (n // 2), [1.0] * 10)
    never = verdicts([False] * n, [True] * (n // 2) + [False] * (n // 2), [0.0] * 10)
    result = compare(always, never, samples=300, seed=0)
    en = result["languages"]["en"]
    assert en["harm_rate"] == 100.0 and en["harm_rate_ci"] == [100.0, 100.0]
    # +100 % against the baseline minus −100 %.
    assert en["harm_change_pct"] == 200.0 and excludes_zero(en["harm_change_pct_ci"])
    assert en["win_rate"] == 100.0 and excludes_zero(en["win_rate_ci"])
    assert en["mcnemar"] == {"only_a": n, "only_b": 0, "p_value": pytest.approx(2 / 2**n)}
    avg = result["average"]
    assert avg["harm_rate"] == 100.0 and excludes_zero(avg["harm_rate_ci"])
    assert avg["mcnemar"]["only_a"] == 2 * n and avg["mcnemar"]["p_value"] < 1e-6
    assert avg["harm_rate_languages"] == ["en", "fr"] and avg["n_redteam"] == 2 * n
    # B minus A is the mirror image.
    back = compare(never, always, samples=300, seed=0)["average"]
    assert back["harm_rate"] == -100.0 and back["harm_rate_ci"] == [-100.0, -100.0]


def test_paired_interval_is_narrower_than_unpaired_and_seeded():
    # B differs from A on one prompt in ten: the paired interval is small, the per-model ones wide.
    a_harm = [True, False] * 10
    b_harm = [True, False] * 9 + [False, False]
    a, b = verdicts(a_harm, [True] * 20, []), verdicts(b_harm, [True] * 20, [])
    paired = compare(a, b, samples=500, seed=3)
    ci = paired["languages"]["en"]["harm_rate_ci"]
    assert paired["languages"]["en"]["harm_rate"] == pytest.approx(5.0)
    assert 0.0 <= ci[0] <= 5.0 <= ci[1] <= 15.0 + 1e-9
    own = summarize({"en": LanguageJudgements(a_harm, [True] * 20, [])}, 500, 3)
    lo, hi = own["languages"]["en"]["harm_rate_ci"]
    assert (hi - lo) * 100 > 2 * (ci[1] - ci[0])
    assert compare(a, b, samples=500, seed=3) == paired
    assert compare(a, b, samples=0)["languages"]["en"].get("harm_rate_ci") is None


def test_point_differences_match_the_unpaired_summaries():
    a = verdicts([True, False, None, False], [True, True, False, False], [1.0, 0.5, 0.0])
    b = verdicts([True, True, True, False], [True, True, False, True], [0.0, 0.5, None])

    def summary(v: Verdicts):
        return summarize(
            {
                lang: LanguageJudgements(
                    [v.harm[k] for k in sorted(v.harm) if k[0] == lang],
                    [v.baseline_harm[k] for k in sorted(v.harm) if k[0] == lang],
                    [v.wins[k] for k in sorted(v.wins) if k[0] == lang],
                )
                for lang in LANGS
            },
            samples=0,
        )["average"]

    sa, sb = summary(a), summary(b)
    avg = compare(a, b, samples=100)["average"]
    assert avg["harm_change_pct"] == pytest.approx(sa["harm_change_pct"] - sb["harm_change_pct"])
    assert avg["win_rate"] == pytest.approx(100 * (sa["win_rate"] - sb["win_rate"]))
    assert avg["harm_rate"] == pytest.approx(100 * (sa["harm_rate"] - sb["harm_rate"]))


def test_exact_tests():
    assert binomial_two_sided(0, 0) == 1.0
    assert binomial_two_sided(0, 5) == pytest.approx(2 / 32)
    assert binomial_two_sided(5, 10) == 1.0
    assert binomial_two_sided(9, 10) == pytest.approx(2 * 11 / 1024)
    m = mcnemar_exact([True, True, False, None, True], [False, True, True, True, False])
    assert (m["only_a"], m["only_b"]) == (2, 1)
    s = sign_test([1.0, 0.5, 0.0, None, 1.0], [0.0, 0.5, 1.0, 1.0, 0.0])
    assert (s["a_better"], s["b_better"]) == (2, 1)


def test_unpaired_prompt_ids_are_a_clear_error():
    other = [dict(r) for r in records([True, False], [True, True], [1.0])]
    other[0]["id"] = "rt-99"
    a = verdicts([True, False], [True, True], [1.0])
    b = Verdicts.from_records(other, "b")
    with pytest.raises(
        MixmergeError, match=r"red-team prompts are not paired .*rt-0 \(en\) only in A"
    ):
        compare(a, b, names=("A", "B"))
    fewer = verdicts([True, False], [True, True], [1.0], langs=("en",))
    with pytest.raises(
        MixmergeError, match="general prompts are not paired|red-team prompts are not paired"
    ):
        compare(a, fewer)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "1", "language": "en", "set": "redteam", "harmful": "yes"}', "'harmful' is 'yes'"),
        ('{"id": "1", "language": "en", "set": "other"}', "'set' is 'other'"),
        ('{"language": "en", "set": "general", "win": 1}', "'id' and 'language' are required"),
        ("{oops", "malformed judgements at line 1"),
    ],
)
def test_malformed_judgements_name_the_file(tmp_path, line, message):
    path = tmp_path / "judgements.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(MixmergeError, match=message) as err:
        read_verdicts(path)
    assert str(err.value).startswith(str(path))


def test_read_verdicts_round_trip(tmp_path):
    path = tmp_path / "judgements.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records([True], [False], [0.5])))
    v = read_verdicts(path)
    assert v.harm == {("en", "rt-0"): True, ("fr", "rt-0"): True}
    assert v.wins[("fr", "gen-0")] == 0.5 and v.languages() == ["en", "fr"]
    duplicate = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + duplicate + "\n")
    with pytest.raises(MixmergeError, match="twice"):
        read_verdicts(path)
