"""The results as people read them: a printed per-language table, and the loggers (a W&B table)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

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


def log_results(
    loggers: DictConfig | None, results: dict[str, Any], config: dict[str, Any]
) -> None:
    """Config, average metrics and the per-language table to the configured loggers (the `logger`
    group); W&B gets the table as `eval/languages`."""
    if not loggers:
        return
    from mixmerge.training.pipeline import instantiate_dict

    rows = [
        [lang, *(values.get(c) for c in TABLE_COLUMNS[1:])]
        for lang, values in results["languages"].items()
    ]
    average = {
        f"eval/average/{k}": v for k, v in results["average"].items() if isinstance(v, int | float)
    }
    for logger in instantiate_dict(loggers):
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
        logger.save()
        logger.finalize("success")
        finish = getattr(getattr(logger, "experiment", None), "finish", None)
        if callable(finish) and type(logger).__name__ == "WandbLogger":
            finish()


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
