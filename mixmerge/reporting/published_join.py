"""The published numbers joined to the report's rows: the published values (and their Δ from the
published 15% mix) for a table row, and every published number as one table."""

from __future__ import annotations

import pandas as pd

from mixmerge.reporting import published
from mixmerge.reporting.labels import NAN
from mixmerge.reporting.selection import RATIO_TOLERANCE

PUBLISHED_COLUMNS = [
    "published_harm_change_pct", "published_win_rate_pct", "published_delta_harm_pct",
    "published_delta_win_pct",
]  # fmt: skip


def published_values(table: str, stage: str, key: str | None) -> dict[str, float]:
    row = published.lookup(table, stage, key)
    ref = published.reference(stage)
    if row is None:
        return dict.fromkeys(PUBLISHED_COLUMNS, NAN)
    return {
        "published_harm_change_pct": row.harm_change_pct,
        "published_win_rate_pct": row.win_rate_pct,
        "published_delta_harm_pct": row.harm_change_pct - ref.harm_change_pct if ref else NAN,
        "published_delta_win_pct": row.win_rate_pct - ref.win_rate_pct if ref else NAN,
    }


def mix_key(ratio: float, reference_ratio: float) -> str | None:
    for key, value in (("mix0", 0.0), ("mix15", reference_ratio), ("mix100", 1.0)):
        if abs(ratio - value) < RATIO_TOLERANCE:
            return key
    return None


def published_frame() -> pd.DataFrame:
    """Every published number, labelled, with Δ from the published 15% mix of the same stage."""
    rows = [
        {
            "source": published.PUBLISHED_LABEL,
            "table": r.table,
            "stage": r.stage,
            "key": r.key,
            "row": r.label,
            **published_values(r.table, r.stage, r.key),
        }
        for r in published.ALL
    ]
    return pd.DataFrame(rows)
