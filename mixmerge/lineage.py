"""The one lineage walker: a model's ancestry read from provenance (`mixmerge.json`).

- `find_baseline` follows the folders on disk from a model up to its root (the model it was
  ultimately fine-tuned from), which evaluation compares against by default;
- `describe` reads the provenance embedded in a model's own `mixmerge.json` (each parent's record
  is copied into its child's) and says what the model is in the study: a data mix, an objective
  merge, a language merge, or a model trained after a merge; its stage (SFT or DPO) and the order
  of its stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixmerge import LANGUAGES
from mixmerge.artifacts import (
    PROVENANCE_FILE,
    ModelRef,
    Provenance,
    Weight,
    load_provenance,
    validate,
)
from mixmerge.errors import MixmergeError

MIX = "mix"
OBJECTIVE_MERGE = "objective_merge"
LANGUAGE_MERGE = "language_merge"
POST_MERGE = "post_merge"  # trained on top of a merge, e.g. SFT→merge→DPO
OTHER = "other"
FAMILIES = (MIX, OBJECTIVE_MERGE, LANGUAGE_MERGE, POST_MERGE, OTHER)


def find_baseline(model: ModelRef) -> ModelRef:
    """Follow provenance from `model` up to the root (a folder without provenance, or a hub id).

    A model without provenance is its own baseline.
    """
    path, reference, lineage = model.path, model.reference, [model.path]
    while True:
        provenance = load_provenance(path) if Path(path).is_dir() else None
        parent = provenance.origin() if provenance else None
        if not parent:
            how = "self" if path == model.path else "provenance"
            return ModelRef(reference, path, how=how, lineage=lineage)
        parent_path = str(parent.path or "")
        local = Path(parent_path).expanduser()
        looks_local = parent_path.startswith(("/", ".", "~")) or local.exists()
        if not parent_path or (looks_local and not local.is_dir()):
            raise MixmergeError(
                f"baseline: {path} descends from {parent_path or 'an unnamed model'} (its "
                f"{Path(path) / PROVENANCE_FILE}), which is not a folder here; pass baseline=<name or path>"
            )
        if parent_path in lineage:
            raise MixmergeError(
                f"baseline: provenance of {path} loops back to {parent_path}; pass baseline=<name or path>"
            )
        path, reference = parent_path, str(parent.reference or parent_path)
        lineage.append(path)


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


def _parents(prov: Provenance) -> list[Provenance]:
    """The provenance records of a model's parents (a merge has several, a trained model one)."""
    return [entry.provenance for entry in prov.parent_records() if entry.provenance is not None]


def chain(prov: Provenance | None) -> list[str]:
    """Stages from the root to this model: ["SFT", "merge", "DPO"] for a DPO model trained on a
    merge of SFT models. A merge follows its first parent (the parents share a history)."""
    if not prov:
        return []
    parents = _parents(prov)
    earlier = chain(parents[0]) if parents else []
    if prov.kind == "merge":
        return [*earlier, "merge"]
    return [*earlier, str(prov.objective or "?").upper()]


def _sorted_languages(codes: set[str]) -> tuple[str, ...]:
    known = [c for c in LANGUAGES if c in codes]
    return tuple(known + sorted(codes - set(known)))


def languages(prov: Provenance | None) -> tuple[str, ...]:
    """Training languages: a trained model's mixture, or every parent's together for a merge."""
    if not prov:
        return ()
    if prov.kind == "merge":
        found: set[str] = set()
        for parent in _parents(prov):
            found.update(languages(parent))
        return _sorted_languages(found)
    return tuple(str(c) for c in (prov.mixture.languages if prov.mixture else ()))


def base_model(prov: Provenance | None) -> str | None:
    """The base model's name (`base_model` of a trained model; a merge's first parent's)."""
    if not prov:
        return None
    if prov.base_model:
        return str(prov.base_model)
    return next((b for b in map(base_model, _parents(prov)) if b), None)


def _ratio(prov: Provenance) -> float | None:
    value = prov.mixture.safety_ratio if prov.mixture else None
    return None if value is None else float(value)


def _recipe(prov: Provenance) -> str | None:
    return str(prov.recipe.name) if prov.recipe and prov.recipe.name else None


def describe(prov: Provenance | dict[str, Any]) -> Description:
    """Classify a model from its provenance (kind "train" or "merge")."""
    if isinstance(prov, dict):
        prov = validate(Provenance, prov, PROVENANCE_FILE)
    steps = chain(prov)
    parents = _parents(prov)
    common = {
        "kind": prov.kind,
        "stage": "dpo" if "DPO" in steps else "sft",
        "order": "→".join(steps),
        "base_model": base_model(prov),
        "languages": languages(prov),
    }
    if prov.kind == "merge":
        # The objective recipe has a safety weight; the language recipe weights models equally (None).
        family = OBJECTIVE_MERGE if prov.safety_weight is not None else LANGUAGE_MERGE
        if any(p.kind == "merge" for p in parents):
            family = OTHER
        return Description(
            family=family,
            method=prov.method or None,
            safety_weight=prov.safety_weight,
            safety_ratio=None,
            parent_languages=tuple(languages(p) for p in parents),
            recipe=_recipe(prov),
            **common,
        )
    merged = next((p for p in parents if p.kind == "merge"), None)
    if merged is not None:
        return Description(
            family=POST_MERGE,
            method=merged.method or None,
            safety_weight=merged.safety_weight,
            safety_ratio=_ratio(prov),
            parent_languages=(),
            recipe=_recipe(merged),
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
