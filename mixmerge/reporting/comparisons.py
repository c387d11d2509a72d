"""Paired comparisons between the report's models, from their per-item judgements: each model
against the reference mix of its stage (the Δ columns) and each objective merge against its two
parents. Results are cached per pair; a pair that cannot be compared keeps the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.paired import Verdicts, compare, excludes_zero, read_verdicts
from mixmerge.reporting.collect import Evaluated, judgements_beside

# Report metric → (paired metric, exact test that goes with it).
DELTAS = {"harm": ("harm_change_pct", "mcnemar"), "win": ("win_rate", "sign")}
_COUNT_KEYS = ("n_redteam", "n_general", "harmful", "baseline_harmful", "wins", "ties")


def evaluation_verdicts(
    name: str, results_path: Path, results: dict[str, Any]
) -> tuple[Verdicts | None, str | None]:
    """An evaluation's per-item verdicts, or None and why not. A malformed file is an error; a
    file that does not reproduce eval_results.json's counts belongs to another evaluation and is
    not used."""
    path = judgements_beside(results_path, results)
    if path is None:
        return None, f"{name}: no judgements.jsonl beside {results_path.name}"
    verdicts = read_verdicts(path)
    for lang, values in results["languages"].items():
        counts = verdicts.counts(lang)
        stored = {k: values.get(k) for k in _COUNT_KEYS if k in values}
        if any(counts[k] != v for k, v in stored.items()):
            return None, f"{name}: {path} does not match {results_path} ({lang} counts)"
    return verdicts, None


def load_verdicts(model: Evaluated) -> tuple[Verdicts | None, str | None]:
    """A collected model's per-item verdicts (evaluation_verdicts of its evaluation)."""
    return evaluation_verdicts(model.name, model.results_path, model.results)


@dataclass
class Comparisons:
    """Paired comparisons on demand, each computed once (seeded, so reruns agree)."""

    samples: int = 1000
    seed: int = 0
    _verdicts: dict[str, tuple[Verdicts | None, str | None]] = field(default_factory=dict)
    _pairs: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def verdicts(self, model: Evaluated) -> tuple[Verdicts | None, str | None]:
        if model.name not in self._verdicts:
            self._verdicts[model.name] = load_verdicts(model)
        return self._verdicts[model.name]

    def get(self, a: Evaluated, b: Evaluated, relation: str) -> dict[str, Any] | None:
        """A minus B (see mixmerge.evaluation.paired.compare), or None (reason in `problems`)."""
        key = (a.name, b.name)
        if key in self._pairs:
            return self._pairs[key]
        (va, why_a), (vb, why_b) = self.verdicts(a), self.verdicts(b)
        result = None
        if va is None or vb is None or self.samples == 0:
            self.problems[key] = why_a or why_b or "paired.samples=0"
        else:
            try:
                result = compare(va, vb, self.samples, self.seed, names=(a.name, b.name))
            except MixmergeError as err:  # different prompts: no pairs, not a broken report
                self.problems[key] = str(err)
        self._pairs[key] = result
        if result is not None:
            self._record(a, b, relation, result)
        return result

    def _record(self, a: Evaluated, b: Evaluated, relation: str, result: dict[str, Any]) -> None:
        scopes = [("average", result["average"]), *result["languages"].items()]
        for scope, values in scopes:
            for metric in ("harm_rate", "harm_change_pct", "win_rate"):
                test = "sign" if metric == "win_rate" else "mcnemar"
                ci = values.get(f"{metric}_ci")
                self.rows.append(
                    {
                        "name": a.name, "against": b.name, "relation": relation,
                        "stage": a.description.stage, "language": scope, "metric": metric,
                        "difference": values[metric],
                        "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                        "excludes_zero": excludes_zero(ci), "exact_test": test,
                        "p_value": values[test]["p_value"],
                        "n_redteam": values["n_redteam"], "n_general": values["n_general"],
                    }
                )  # fmt: skip

    def frame(self) -> pd.DataFrame:
        """Every computed comparison, long format (paired.csv)."""
        return pd.DataFrame(self.rows, columns=PAIRED_COLUMNS)

    def notes(self) -> list[str]:
        """Why pairs were not compared, one line per distinct reason."""
        return sorted(set(self.problems.values()))


PAIRED_COLUMNS = [
    "name", "against", "relation", "stage", "language", "metric", "difference", "ci_low",
    "ci_high", "excludes_zero", "exact_test", "p_value", "n_redteam", "n_general",
]  # fmt: skip


def delta_columns(result: dict[str, Any] | None, prefix: str = "delta") -> dict[str, Any]:
    """The averaged paired intervals as frame columns: `<prefix>_harm_ci_low`, …, `_sig`."""
    out: dict[str, Any] = {}
    for short, (metric, _) in DELTAS.items():
        ci = (result or {}).get("average", {}).get(f"{metric}_ci")
        nan = float("nan")
        out[f"{prefix}_{short}_ci_low"] = ci[0] if ci else nan
        out[f"{prefix}_{short}_ci_high"] = ci[1] if ci else nan
        out[f"{prefix}_{short}_sig"] = excludes_zero(ci)
    return out


PARENT_ROLES = ("general parent", "safety parent")  # the objective recipe's order


def parents_of(model: Evaluated, models: Sequence[Evaluated]) -> list[tuple[str, Evaluated]]:
    """An objective merge's evaluated parents with their roles: found by path, or by name when
    the folders have moved since the merge."""
    by_path = {m.path.resolve(): m for m in models}
    by_name = {m.name: m for m in models}
    found = []
    for role, entry in zip(PARENT_ROLES, model.provenance.get("parents") or [], strict=False):
        entry = entry if isinstance(entry, dict) else {}
        path = str(entry.get("path") or "")
        parent = by_path.get(Path(path).expanduser().resolve()) if path else None
        parent = parent or by_name.get(str(entry.get("reference")))
        if parent is not None:
            found.append((role, parent))
    return found
