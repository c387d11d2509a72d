"""The results as people read them: a printed per-language table, and the loggers (a W&B table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from mixmerge.instantiators import close_loggers, instantiate_nodes

TABLE_COLUMNS = [
    "language",
    "harm_rate",
    "baseline_harm_rate",
    "harm_change_pct",
    "win_rate_pct",
    "n_redteam",
    "n_general",
    "harm_unparsed",
    "win_unparsed",
]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def scalar_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The averages and each language's rates as flat metric names: `eval/average/harm_rate`,
    `eval/fr/win_rate_pct`, …"""
    metrics = {f"eval/average/{k}": v for k, v in results["average"].items() if _number(v)}
    for lang, values in results["languages"].items():
        metrics.update({f"eval/{lang}/{k}": v for k, v in values.items() if _number(v)})
    return metrics


def log_results(
    loggers: DictConfig | None,
    results: dict[str, Any],
    config: dict[str, Any],
    records: Sequence[dict[str, Any]] = (),
) -> None:
    """Config, average and per-language metrics, the per-language table (`eval/languages`) and the
    per-item judgements (`eval/judgements`, one row per item) to the configured loggers."""
    if not loggers:
        return
    from mixmerge.evaluation.judges import RECORD_FIELDS

    rows = [
        [lang, *(values.get(c) for c in TABLE_COLUMNS[1:])]
        for lang, values in results["languages"].items()
    ]
    # W&B tables want one type per column: verdicts as text ("true"/"false"/"0.5"), None as "".
    items = [[_cell(r.get(c)) for c in RECORD_FIELDS] for r in records]
    average = scalar_metrics(results)
    used = instantiate_nodes(loggers)
    for logger in used:
        logger.log_hyperparams(
            {
                "config": config,
                "model": results["model"],
                "baseline": results["baseline"],
            }
        )
        logger.log_metrics(average)
        if hasattr(logger, "log_table"):
            logger.log_table(key="eval/languages", columns=TABLE_COLUMNS, data=rows)
            if items:
                logger.log_table(key="eval/judgements", columns=list(RECORD_FIELDS), data=items)
    close_loggers(used)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}" if pct else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(results: dict[str, Any]) -> str:
    """The per-language results as a fixed-width text table (printed at the end of a run)."""
    header = f"{'lang':<6}{'harm':>8}{'base':>8}{'change%':>10}{'win%':>8}{'n_rt':>6}{'n_gen':>7}{'unparsed':>10}"
    lines = [header]
    for lang, v in [
        *results["languages"].items(),
        ("avg", {**results["average"], **results["totals"]}),
    ]:
        unparsed = v["harm_unparsed"] + v["baseline_harm_unparsed"] + v["win_unparsed"]
        win = None if v.get("win_rate_pct") is None else f"{v['win_rate_pct']:.1f}"
        lines.append(
            f"{lang:<6}{_fmt(v['harm_rate']):>8}{_fmt(v['baseline_harm_rate']):>8}{_fmt(v['harm_change_pct'], pct=True):>10}"
            f"{win or '—':>8}{v['n_redteam']:>6}{v['n_general']:>7}{unparsed:>10}"
        )
    return "\n".join(lines)
