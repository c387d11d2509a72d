"""The study's published numbers (DESIGN.md §2), as data, so the report can show them beside the
user's own results. They come from Aya 23 8B judged by GPT-4: a different model, data scale and
judge from a local run, so they are a reference point, not an expected value."""

from __future__ import annotations

from dataclasses import dataclass

PUBLISHED_LABEL = "published (Aya 23 8B, GPT-4 judge)"
SOURCE = "Mix Data or Merge Models? Optimizing for Diverse Multi-Task Learning (arXiv 2410.10801)"


@dataclass(frozen=True)
class PublishedRow:
    """One published result: harm change (%, lower is better) and win rate (%) vs the base model."""

    table: str  # main | language | position
    stage: str  # sft | dpo
    key: str  # main: mix0 mix15 mix100 linear slerp ties dare_ties; language: mix15 all en_fr_es;
    #          position: the stage order, e.g. SFT→merge→DPO
    label: str
    harm_change_pct: float
    win_rate_pct: float


def _main(
    key: str, label: str, sft: tuple[float, float], dpo: tuple[float, float]
) -> list[PublishedRow]:
    return [
        PublishedRow("main", "sft", key, label, *sft),
        PublishedRow("main", "dpo", key, label, *dpo),
    ]


MAIN: tuple[PublishedRow, ...] = (
    *_main("mix0", "0% safety mix", (-41.4, 70.0), (-39.2, 70.7)),
    *_main("mix15", "15% safety mix", (-56.6, 67.4), (-54.69, 71.0)),
    *_main("mix100", "100% safety mix", (-64.4, 64.8), (-68.2, 75.0)),
    *_main("linear", "Linear", (-49.1, 76.0), (-48.6, 75.0)),
    *_main("slerp", "SLERP", (-58.2, 72.6), (-57.8, 78.0)),
    *_main("ties", "TIES", (-45.2, 74.9), (-65.1, 63.6)),
    *_main("dare_ties", "DARE-TIES", (-56.1, 70.0), (-55.9, 78.5)),
)

# Language-based merging: SFT models, TIES.
LANGUAGE: tuple[PublishedRow, ...] = (
    PublishedRow("language", "sft", "mix15", "multilingual 15% safety mix", -56.6, 67.4),
    PublishedRow("language", "sft", "all", "TIES merge of the six monolingual models", -63.2, 71.2),
    PublishedRow(
        "language", "sft", "en_fr_es", "TIES merge of the [en, fr, es] models", -65.3, 77.0
    ),
)

# Merge position, SLERP.
POSITION: tuple[PublishedRow, ...] = (
    PublishedRow("position", "sft", "SFT→merge", "SFT → merge", -58.2, 72.6),
    PublishedRow("position", "dpo", "SFT→DPO→merge", "SFT → DPO → merge", -57.8, 78.0),
    PublishedRow("position", "dpo", "SFT→merge→DPO", "SFT → merge → DPO", -61.2, 74.0),
)

ALL: tuple[PublishedRow, ...] = (*MAIN, *LANGUAGE, *POSITION)

MIX_KEYS = ("mix0", "mix15", "mix100")
METHOD_KEYS = ("linear", "slerp", "ties", "dare_ties")


def lookup(table: str, stage: str, key: str | None) -> PublishedRow | None:
    """The published row for (table, stage, key), or None when the study has no such row."""
    return next(
        (r for r in ALL if r.table == table and r.stage == stage and r.key == key),
        None,
    )


def reference(stage: str) -> PublishedRow | None:
    """The published 15% safety mix of a stage (what the Δ columns are measured from)."""
    return lookup("main", stage, "mix15")
