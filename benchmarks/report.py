"""The results table: figures side by side, mixmerge/peer ratios and the issue's targets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    section: str
    metric: str
    mixmerge: float
    peer: str
    peer_value: float | None
    better: str  # "higher", "lower" or "" (information)
    target: str = ""  # e.g. ">= 2x" on the ratio, or ">= 0.6" on the value
    ratio: float | None = None
    target_met: bool | None = None


def _row(
    section: str,
    metric: str,
    ours: float,
    peer: str,
    theirs: float | None,
    better: str,
    target: str = "",
) -> Row:
    ratio = ours / theirs if theirs else None
    met = None
    if target:
        op, bound = target.split()
        on_ratio = bound.endswith("x")
        value = ratio if on_ratio else ours
        limit = float(bound.rstrip("x"))
        met = value is not None and (value >= limit if op == ">=" else value <= limit)
    return Row(section, metric, ours, peer, theirs, better, target, ratio, met)


def build_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if "sft" in results:
        mm, trl = results["sft"]["mixmerge"], results["sft"]["trl"]
        rows += [
            _row(
                "sft",
                "non-padding tokens/s",
                mm["tokens_per_s"],
                "TRL SFTTrainer",
                trl["tokens_per_s"],
                "higher",
                ">= 2x",
            ),
            _row(
                "sft",
                "seconds per step",
                mm["seconds_per_step"],
                "TRL SFTTrainer",
                trl["seconds_per_step"],
                "lower",
            ),
            _row(
                "sft",
                "padding fraction",
                mm["padding_fraction"],
                "TRL SFTTrainer",
                trl["padding_fraction"],
                "lower",
            ),
            _row(
                "sft",
                "peak RSS (MB)",
                mm["peak_rss_mb"],
                "TRL SFTTrainer",
                trl["peak_rss_mb"],
                "lower",
            ),
        ]
    if "dpo" in results:
        mm = results["dpo"]["mixmerge"]
        for key, label in (("trl", "TRL DPOTrainer"), ("trl_precompute", "TRL DPO precompute_ref")):
            peer = results["dpo"][key]
            default = key == "trl"
            rows += [
                _row(
                    "dpo",
                    "epoch wall s (incl. reference)",
                    mm["wall_s"],
                    label,
                    peer["wall_s"],
                    "lower",
                    "<= 0.5x" if default else "",
                ),
                _row("dpo", "pairs/s", mm["pairs_per_s"], label, peer["pairs_per_s"], "higher"),
                _row(
                    "dpo",
                    "non-padding tokens/s",
                    mm["tokens_per_s"],
                    label,
                    peer["tokens_per_s"],
                    "higher",
                ),
                _row(
                    "dpo",
                    "peak RSS (MB)",
                    mm["peak_rss_mb"],
                    label,
                    peer["peak_rss_mb"],
                    "lower",
                    "<= 1x" if default else "",
                ),
            ]
    for method, figures in results.get("merge", {}).items():
        mm, cli = figures["mixmerge"], figures["mergekit_cli"]
        rows += [
            _row(
                "merge",
                f"{method}: wall s (process)",
                mm["process_wall_s"],
                "mergekit-yaml",
                cli["process_wall_s"],
                "lower",
                "<= 1.1x",
            ),
            _row(
                "merge",
                f"{method}: peak RSS (MB)",
                mm["peak_rss_mb"],
                "mergekit-yaml",
                cli["peak_rss_mb"],
                "lower",
            ),
        ]
    if "generation" in results:
        gen = results["generation"]
        rows += [
            _row(
                "generation",
                f"greedy new tokens/s (batch {gen['fast']['batch_size']}"
                + (f", DRY {dry})" if (dry := gen["fast"].get("dry_multiplier")) else ")"),
                gen["fast"]["tokens_per_s"],
                "batched model.generate",
                gen["generate"]["tokens_per_s"],
                "higher",
                ">= 2x",
            ),
            _row(
                "generation",
                "responses identical to generate's",
                gen["identical"],
                "prompts",
                gen["fast"]["prompts"],
                "",
            ),
        ]
    if "util" in results:
        util = results["util"]
        for key in ("fp32", "bf16"):
            rows.append(
                _row(
                    "util",
                    f"matmul peak GFLOP/s ({key})",
                    util["matmul"][key]["best_flops"] / 1e9,
                    "",
                    None,
                    "",
                )
            )
        mm, trl = util["mixmerge"], util["trl"]
        rows += [
            _row(
                "util",
                "SFT step GFLOP/s (6·N·tokens)",
                mm["achieved_flops"] / 1e9,
                "TRL SFTTrainer",
                trl["achieved_flops"] / 1e9,
                "higher",
            ),
            _row(
                "util",
                f"fraction of matmul peak ({mm['precision']} vs {trl['precision']})",
                mm["fraction_of_peak"],
                "TRL SFTTrainer",
                trl["fraction_of_peak"],
                "higher",
                ">= 0.6",
            ),
            _row(
                "util",
                "fraction incl. padding tokens",
                mm["fraction_with_padding"],
                "TRL SFTTrainer",
                trl["fraction_with_padding"],
                "higher",
            ),
        ]
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(rows: list[Row]) -> str:
    """A fixed-width text table, one line per figure."""
    header = ("section", "metric", "mixmerge", "peer", "peer value", "mixmerge/peer", "target")
    lines = []
    for r in rows:
        target = f"{r.target} ({'met' if r.target_met else 'not met'})" if r.target else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        lines.append(
            (r.section, r.metric, _fmt(r.mixmerge), r.peer, _fmt(r.peer_value), ratio, target)
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    out = [
        " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *lines)
    ]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def _loads(node: Any) -> list[float]:
    if isinstance(node, dict):
        own = [node["load_at_start"]] if isinstance(node.get("load_at_start"), (int, float)) else []
        return own + [x for value in node.values() for x in _loads(value)]
    return []


def busy_note(results: dict[str, Any], cores: int) -> str | None:
    """A warning when other work shared the machine: the load average at some process's start
    exceeded the cores (the benchmark's own process accounts for about one)."""
    loads = _loads(results)
    if not loads or max(loads) <= cores + 0.5:
        return None
    return (
        f"note: the machine was busy (load average up to {max(loads):.1f} on {cores} cores when a section "
        "started): absolute figures are low and ratios are only as good as the load was even; see "
        "load_at_start and cpu_busy per process in the JSON"
    )


def rows_as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
