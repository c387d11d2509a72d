"""Mixtures of general and safety data with an exact, documented safety ratio, per language.

Convention: `safety_ratio` is the safety share of the final mixture, n_safety / (n_safety + n_general),
applied within each language. The study's "15%" baseline is described as safety:general 1:5,
which is 1/6 = 16.7% in this convention (preset `mix_1to5_safety`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mixmerge import LANGUAGES
from mixmerge.data.sources import load_source
from mixmerge.errors import MixmergeError

CONVENTION = "safety_ratio = n_safety / (n_safety + n_general), applied within each language"
INSUFFICIENT_POLICIES = ("downsample_general", "repeat_safety", "error")


@dataclass
class Mixture:
    records: list[dict[str, Any]]
    manifest: dict[str, Any]


def validate_languages(codes: Sequence[str]) -> list[str]:
    codes = list(codes)
    if not codes:
        raise MixmergeError(
            "languages.codes: empty (expected a subset of " + " ".join(LANGUAGES) + ")"
        )
    for code in codes:
        if code not in LANGUAGES:
            raise MixmergeError(
                f"languages.codes: unknown language '{code}' (expected a subset of {' '.join(LANGUAGES)})"
            )
    if len(set(codes)) != len(codes):
        raise MixmergeError(f"languages.codes: duplicate language in {codes}")
    return codes


def mixture_counts(
    n_general: int, n_safety: int, ratio: float, policy: str, cap: int | None, language: str
) -> tuple[int, int]:
    """How many general and safety examples a language contributes (safety may exceed n_safety
    only under the `repeat_safety` policy)."""
    if ratio == 0:
        take_g, take_s = n_general, 0
    elif ratio == 1:
        take_g, take_s = 0, n_safety
    else:
        take_g = n_general
        take_s = round(ratio * n_general / (1 - ratio))
        if take_s > n_safety:
            if policy == "error":
                raise MixmergeError(
                    f"data.safety_ratio={ratio}: language {language} needs {take_s} safety examples "
                    f"but has {n_safety} (set data.on_insufficient_safety=downsample_general or repeat_safety)"
                )
            if policy == "downsample_general":
                take_s = n_safety
                take_g = round(n_safety * (1 - ratio) / ratio)
    if cap is not None and take_g + take_s > cap:
        take_s = round(ratio * cap)
        take_g = cap - take_s
    if take_s > 0 and n_safety == 0:
        raise MixmergeError(f"data.safety_ratio={ratio}: no safety data for language {language}")
    if take_g > 0 and n_general == 0 or (ratio < 1 and n_general == 0):
        raise MixmergeError(f"data.safety_ratio={ratio}: no general data for language {language}")
    return take_g, take_s


def _sample(rng: np.random.Generator, pool: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    if n <= len(pool):
        return [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]
    # repeat_safety: every example once, then a random top-up
    extra = rng.choice(len(pool), size=n - len(pool), replace=True)
    return pool + [pool[i] for i in extra]


def build_mixture(data: DictConfig, languages: Sequence[str], objective: str, seed: int) -> Mixture:
    """Load both sources, sample each language to the requested ratio, shuffle, and describe it."""
    codes = validate_languages(languages)
    ratio = data.safety_ratio
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
        raise MixmergeError(f"data.safety_ratio={ratio}: expected a number in [0, 1]")
    policy = data.on_insufficient_safety
    if policy not in INSUFFICIENT_POLICIES:
        raise MixmergeError(
            f"data.on_insufficient_safety={policy}: expected one of {', '.join(INSUFFICIENT_POLICIES)}"
        )
    cap = data.get("max_examples_per_language")

    pools: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for kind in ("general", "safety"):
        needed = ratio < 1 if kind == "general" else ratio > 0
        rows = load_source(data[kind], f"data.{kind}", codes, objective) if needed else []
        pools[kind] = {
            lang: [dict(r, kind=kind) for r in rows if r["language"] == lang] for lang in codes
        }

    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    available: dict[str, dict[str, int]] = {}
    for lang in codes:
        g, s = pools["general"][lang], pools["safety"][lang]
        available[lang] = {"general": len(g), "safety": len(s)}
        take_g, take_s = mixture_counts(len(g), len(s), ratio, policy, cap, lang)
        records += _sample(rng, g, take_g) + _sample(rng, s, take_s)
        counts[lang] = {"general": take_g, "safety": take_s}
    order = rng.permutation(len(records))
    records = [records[i] for i in order]

    total = len(records)
    n_safety = sum(c["safety"] for c in counts.values())
    subtasks = Counter(
        f"{r['kind']}/{r.get('task') or r.get('category') or 'unlabelled'}/{r['language']}"
        for r in records
    )
    manifest = {
        "name": data.name,
        "objective": objective,
        "safety_ratio": ratio,
        "convention": CONVENTION,
        "on_insufficient_safety": policy,
        "seed": seed,
        "languages": codes,
        "counts": counts,
        "available": available,
        "counts_by_subtask": dict(sorted(subtasks.items())),
        "total": total,
        "realised_safety_fraction": (n_safety / total) if total else 0.0,
        "sources": {
            k: OmegaConf.to_container(data[k], resolve=True) for k in ("general", "safety")
        },
    }
    if total == 0:
        raise MixmergeError(
            "data: the mixture is empty (check data.safety_ratio, languages and sources)"
        )
    return Mixture(records, manifest)
