"""What a model is, read from its provenance chain: a data mix, an objective merge, a language
merge, or a model trained after a merge; its stage (SFT or DPO) and the order of its stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mixmerge import LANGUAGES

MIX = "mix"
OBJECTIVE_MERGE = "objective_merge"
LANGUAGE_MERGE = "language_merge"
POST_MERGE = "post_merge"  # trained on top of a merge, e.g. SFT→merge→DPO
OTHER = "other"
FAMILIES = (MIX, OBJECTIVE_MERGE, LANGUAGE_MERGE, POST_MERGE, OTHER)

Weight = float | list[float]


@dataclass(frozen=True)
class Description:
    """A model's place in the study, derived from `mixmerge.json` alone."""

    kind: str  # train | merge (the provenance kind)
    family: str  # one of FAMILIES
    stage: str  # sft | dpo: dpo when any step of the chain is preference training
    order: str  # the stage order from the root, e.g. "SFT→DPO→merge"
    base_model: str | None
    method: str | None  # merge method (for POST_MERGE: the method of the merge it was trained on)
    safety_weight: Weight | None  # objective merges (for POST_MERGE: its merge's weight)
    safety_ratio: float | None  # the model's own training mixture (trained models)
    languages: tuple[str, ...]  # training languages (for merges: of all parents together)
    parent_languages: tuple[tuple[str, ...], ...]  # merges: each parent's training languages
    recipe: str | None


def _parents(prov: dict[str, Any]) -> list[dict[str, Any]]:
    """The provenance records of a model's parents (a merge has several, a trained model one)."""
    if prov.get("kind") == "merge":
        entries = prov.get("parents") or []
    else:
        entries = [prov.get("parent")] if prov.get("parent") else []
    return [
        e["provenance"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("provenance"), dict)
    ]


def chain(prov: dict[str, Any] | None) -> list[str]:
    """Stages from the root to this model: ["SFT", "merge", "DPO"] for a DPO model trained on a
    merge of SFT models. A merge follows its first parent (the parents share a history)."""
    if not prov:
        return []
    parents = _parents(prov)
    earlier = chain(parents[0]) if parents else []
    if prov.get("kind") == "merge":
        return [*earlier, "merge"]
    return [*earlier, str(prov.get("objective") or "?").upper()]


def _sorted_languages(codes: set[str]) -> tuple[str, ...]:
    known = [c for c in LANGUAGES if c in codes]
    return tuple(known + sorted(codes - set(known)))


def languages(prov: dict[str, Any] | None) -> tuple[str, ...]:
    """Training languages: a trained model's mixture, or every parent's together for a merge."""
    if not prov:
        return ()
    if prov.get("kind") == "merge":
        found: set[str] = set()
        for parent in _parents(prov):
            found.update(languages(parent))
        return _sorted_languages(found)
    return tuple(str(c) for c in (prov.get("mixture") or {}).get("languages") or ())


def base_model(prov: dict[str, Any] | None) -> str | None:
    """The base model's name (`base_model` of a trained model; a merge's first parent's)."""
    if not prov:
        return None
    if prov.get("base_model"):
        return str(prov["base_model"])
    return next((b for b in map(base_model, _parents(prov)) if b), None)


def _ratio(prov: dict[str, Any]) -> float | None:
    value = (prov.get("mixture") or {}).get("safety_ratio")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _weight(value: Any) -> Weight | None:
    if isinstance(value, list):
        return [float(v) for v in value]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def describe(prov: dict[str, Any]) -> Description:
    """Classify a model from its provenance (kind "train" or "merge")."""
    steps = chain(prov)
    stage = "dpo" if "DPO" in steps else "sft"
    kind = str(prov.get("kind"))
    parents = _parents(prov)
    common = {
        "kind": kind,
        "stage": stage,
        "order": "→".join(steps),
        "base_model": base_model(prov),
        "languages": languages(prov),
    }
    if kind == "merge":
        weight = _weight(prov.get("safety_weight"))
        recipe = (prov.get("recipe") or {}).get("name")
        # The objective recipe has a safety weight; the language recipe weights models equally (None).
        family = OBJECTIVE_MERGE if weight is not None else LANGUAGE_MERGE
        if any(p.get("kind") == "merge" for p in parents):
            family = OTHER
        return Description(
            family=family,
            method=str(prov.get("method")) if prov.get("method") else None,
            safety_weight=weight,
            safety_ratio=None,
            parent_languages=tuple(languages(p) for p in parents),
            recipe=str(recipe) if recipe else None,
            **common,
        )
    merged = next((p for p in parents if p.get("kind") == "merge"), None)
    if merged is not None:
        return Description(
            family=POST_MERGE,
            method=str(merged.get("method")) if merged.get("method") else None,
            safety_weight=_weight(merged.get("safety_weight")),
            safety_ratio=_ratio(prov),
            parent_languages=(),
            recipe=(merged.get("recipe") or {}).get("name"),
            **common,
        )
    return Description(
        family=MIX if "merge" not in steps else OTHER,
        method=None,
        safety_weight=None,
        safety_ratio=_ratio(prov),
        parent_languages=(),
        recipe=None,
        **common,
    )
