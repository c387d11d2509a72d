"""Paired comparison of two evaluated models on the prompts they share.

Two evaluations of the same eval set answer the same prompts, so the difference between two
models is measured prompt by prompt: a paired bootstrap resamples prompt ids (the same resample
for both models, and for each model's baseline verdicts) and recomputes, per language and averaged
over languages, the difference in harm rate, in relative harm change and in win rate. Resampling
pairs cancels the prompt-to-prompt variation both models share, so a paired interval is narrower
than the two models' own intervals taken together. Exact tests beside it: McNemar's test on the
harm verdicts (discordant prompts) and a sign test on the general prompts' scores.

Every difference is model A minus model B, in percentage points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixmerge import LANGUAGES
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.metrics import (
    CONFIDENCE,
    _as_array,
    _change_pct,
    _interval,
    _resampled_rates,
    harm_change_pct,
    rate,
)

# The differences computed, in percentage points: harmful-rate difference, difference of the
# relative harm changes against each model's baseline, win-rate difference.
METRICS = ("harm_rate", "harm_change_pct", "win_rate")

Key = tuple[str, str]  # (language, prompt id)


@dataclass
class Verdicts:
    """One model's per-item verdicts, keyed by (language, prompt id): harm of its red-team
    responses and of its baseline's, and its pairwise scores (1/0.5/0) on general prompts.
    None is an unparsed judgement."""

    harm: dict[Key, bool | None] = field(default_factory=dict)
    baseline_harm: dict[Key, bool | None] = field(default_factory=dict)
    wins: dict[Key, float | None] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str) -> Verdicts:
        """From judgement records (`judgements.jsonl` rows); `source` names the file in errors."""
        out = cls()
        for n, r in enumerate(records, 1):
            where = f"{source}: record {n}"
            if not isinstance(r, Mapping):
                raise MixmergeError(f"{where}: expected a JSON object")
            key = (str(r.get("language")), str(r.get("id")))
            if r.get("id") is None or r.get("language") is None:
                raise MixmergeError(f"{where}: 'id' and 'language' are required")
            if r.get("set") == "redteam":
                if key in out.harm:
                    raise MixmergeError(f"{where}: red-team prompt {key[1]} ({key[0]}) twice")
                out.harm[key] = _verdict(r.get("harmful"), f"{where}: 'harmful'", bool)
                out.baseline_harm[key] = _verdict(
                    r.get("baseline_harmful"), f"{where}: 'baseline_harmful'", bool
                )
            elif r.get("set") == "general":
                if key in out.wins:
                    raise MixmergeError(f"{where}: general prompt {key[1]} ({key[0]}) twice")
                out.wins[key] = _verdict(r.get("win"), f"{where}: 'win'", float)
            else:
                raise MixmergeError(
                    f"{where}: 'set' is {r.get('set')!r}, expected redteam or general"
                )
        return out

    def languages(self) -> list[str]:
        present = {lang for lang, _ in [*self.harm, *self.wins]}
        return [c for c in LANGUAGES if c in present] + sorted(present - set(LANGUAGES))

    def counts(self, language: str) -> dict[str, int]:
        """The per-language counts eval_results.json carries, to check the two files agree."""
        harm = [v for (lang, _), v in self.harm.items() if lang == language]
        base = [v for (lang, _), v in self.baseline_harm.items() if lang == language]
        wins = [v for (lang, _), v in self.wins.items() if lang == language]
        return {
            "n_redteam": len(harm),
            "n_general": len(wins),
            "harmful": sum(v is True for v in harm),
            "baseline_harmful": sum(v is True for v in base),
            "wins": sum(v == 1.0 for v in wins),
            "ties": sum(v == 0.5 for v in wins),
        }


def _verdict(value: Any, where: str, kind: type) -> Any:
    if value is None:
        return None
    if kind is bool and isinstance(value, bool):
        return value
    if kind is float and not isinstance(value, bool) and value in (0, 0.5, 1):
        return float(value)
    expected = "true, false or null" if kind is bool else "1, 0.5, 0 or null"
    raise MixmergeError(f"{where} is {value!r}, expected {expected}")


def read_verdicts(path: str | Path) -> Verdicts:
    """A `judgements.jsonl` file as Verdicts; a malformed file is a one-line error naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise MixmergeError(f"{path}: cannot read judgements ({err})") from err
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise MixmergeError(f"{path}: malformed judgements at line {n}: {err.msg}") from err
    return Verdicts.from_records(records, str(path))


def _shared(a: Mapping[Key, Any], b: Mapping[Key, Any], what: str, names: tuple[str, str]) -> None:
    """Both models must have judged exactly the same prompts: a paired test needs every pair."""
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    if only_a or only_b:
        side, key = (names[0], min(only_a)) if only_a else (names[1], min(only_b))
        raise MixmergeError(
            f"paired comparison of {names[0]} and {names[1]}: {what} prompts are not paired "
            f"({len(only_a) + len(only_b)} id(s) judged for one model only, e.g. {key[1]} ({key[0]}) "
            f"only in {side}); evaluate both on the same eval set and prompt count"
        )


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials under p = 1/2 (sign and McNemar tests)."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def mcnemar_exact(a: Sequence[bool | None], b: Sequence[bool | None]) -> dict[str, Any]:
    """Exact McNemar test on paired harm verdicts: only prompts where exactly one model was
    harmful count (pairs with an unparsed verdict are left out)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    return {
        "only_a": only_a,
        "only_b": only_b,
        "p_value": binomial_two_sided(only_a, only_a + only_b),
    }


def sign_test(a: Sequence[float | None], b: Sequence[float | None]) -> dict[str, Any]:
    """Exact sign test on paired scores: prompts where A scored higher against where B did (ties
    and unparsed left out)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    better, worse = sum(x > y for x, y in pairs), sum(x < y for x, y in pairs)
    return {
        "a_better": better,
        "b_better": worse,
        "p_value": binomial_two_sided(better, better + worse),
    }


def excludes_zero(interval: Sequence[float] | None) -> bool:
    """True when a 95% interval lies wholly on one side of 0 (the difference is distinguishable)."""
    return interval is not None and (interval[0] > 0 or interval[1] < 0)


def _diff(x: float | None, y: float | None, scale: float) -> float | None:
    return None if x is None or y is None else scale * (x - y)


def _language(
    a: Verdicts, b: Verdicts, lang: str, samples: int, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Point differences, exact tests and per-resample differences for one language."""
    rt = sorted(k for k in a.harm if k[0] == lang)
    gen = sorted(k for k in a.wins if k[0] == lang)
    ha, hb = [a.harm[k] for k in rt], [b.harm[k] for k in rt]
    ba, bb = [a.baseline_harm[k] for k in rt], [b.baseline_harm[k] for k in rt]
    wa, wb = [a.wins[k] for k in gen], [b.wins[k] for k in gen]
    point = {
        "harm_rate": _diff(rate(ha), rate(hb), 100.0),
        "harm_change_pct": _diff(
            harm_change_pct(rate(ha), rate(ba)), harm_change_pct(rate(hb), rate(bb)), 1.0
        ),
        "win_rate": _diff(rate(wa), rate(wb), 100.0),
    }
    out: dict[str, Any] = {
        **point,
        "n_redteam": len(rt),
        "n_general": len(gen),
        "mcnemar": mcnemar_exact(ha, hb),
        "sign": sign_test(wa, wb),
    }
    nan = np.full(samples, np.nan)
    boots = dict.fromkeys(METRICS, nan)
    if samples and rt:
        index = rng.integers(0, len(rt), size=(samples, len(rt)))
        rates = [_resampled_rates(_as_array(v), index) for v in (ha, hb, ba, bb)]
        boots["harm_rate"] = 100.0 * (rates[0] - rates[1])
        boots["harm_change_pct"] = _change_pct(rates[0], rates[2]) - _change_pct(rates[1], rates[3])
    if samples and gen:
        index = rng.integers(0, len(gen), size=(samples, len(gen)))
        boots["win_rate"] = 100.0 * (
            _resampled_rates(_as_array(wa), index) - _resampled_rates(_as_array(wb), index)
        )
    if samples:
        for key in METRICS:
            out[f"{key}_ci"] = _interval(boots[key]) if point[key] is not None else None
    return out, boots


def compare(
    a: Verdicts,
    b: Verdicts,
    samples: int = 1000,
    seed: int = 0,
    names: tuple[str, str] = ("A", "B"),
) -> dict[str, Any]:
    """Model A minus model B, per language and averaged over languages (unweighted, as the study
    averages; a language whose difference is undefined is left out of that average), each with a
    paired-bootstrap 95% interval (`samples` resamples of prompt ids, seeded) and exact tests.

    Raises MixmergeError when the two models did not judge the same prompts."""
    _shared(a.harm, b.harm, "red-team", names)
    _shared(a.wins, b.wins, "general", names)
    rng = np.random.default_rng(seed)
    languages = a.languages()
    result: dict[str, Any] = {"languages": {}, "average": {}}
    boots = {}
    for lang in languages:
        result["languages"][lang], boots[lang] = _language(a, b, lang, samples, rng)
    average: dict[str, Any] = {}
    for key in METRICS:
        included = [lang for lang in languages if result["languages"][lang][key] is not None]
        values = [result["languages"][lang][key] for lang in included]
        average[key] = sum(values) / len(values) if values else None
        average[f"{key}_languages"] = included
        if samples:
            stacked = np.array([boots[lang][key] for lang in included]) if included else None
            with np.errstate(invalid="ignore"):
                average[f"{key}_ci"] = (
                    _interval(stacked.mean(axis=0)) if stacked is not None else None
                )
    # Exact tests pooled over languages (each prompt is one pair, whatever its language).
    for test, parts in (("mcnemar", ("only_a", "only_b")), ("sign", ("a_better", "b_better"))):
        k, m = (sum(result["languages"][lang][test][p] for lang in languages) for p in parts)
        average[test] = {parts[0]: k, parts[1]: m, "p_value": binomial_two_sided(k, k + m)}
    average["n_redteam"] = sum(result["languages"][lang]["n_redteam"] for lang in languages)
    average["n_general"] = sum(result["languages"][lang]["n_general"] for lang in languages)
    result["average"] = average
    result["bootstrap"] = {"samples": samples, "seed": seed, "confidence": CONFIDENCE}
    return result
