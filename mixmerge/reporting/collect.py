"""Find every model folder (`mixmerge.json`) and every evaluation (`eval_results.json`) below the
search folders, check the files, and pair each model with its newest evaluation."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixmerge.artifacts import (
    JUDGEMENTS_FILE,
    PROVENANCE_FILE,
    RESULTS_FILE,
    SEARCH_FILE,
    EvalResults,
    Provenance,
    read_artifact,
)
from mixmerge.lineage import Description, describe

# Folders that never hold models or evaluations, and can hold many files (W&B runs, checkpoints).
_PRUNE = {"wandb", "checkpoints", "csv", "lightning_logs", "__pycache__", "node_modules"}


@dataclass
class Evaluated:
    """A model with provenance and the evaluation the report uses."""

    name: str
    path: Path
    provenance: dict[str, Any]
    description: Description
    results_path: Path
    results: dict[str, Any]
    evaluations: int  # evaluations found for this model (the newest is used)

    @property
    def average(self) -> dict[str, Any]:
        return self.results["average"]

    @property
    def judge(self) -> str:
        return str((self.results.get("judge") or {}).get("name") or "?")

    @property
    def judge_label(self) -> str:
        return judge_label(self.results)

    @property
    def baseline(self) -> str:
        baseline = self.results.get("baseline") or {}
        return str(baseline.get("reference") or baseline.get("path") or "?")

    @property
    def decoding(self) -> str:
        return decoding_label(self.results)

    @property
    def eval_languages(self) -> list[str]:
        return list(self.results["languages"])

    @property
    def judgements_path(self) -> Path | None:
        return judgements_beside(self.results_path, self.results)


def judge_label(results: dict[str, Any]) -> str:
    """The judge an evaluation used, told apart from other weights under the same name: a trained
    judge's name carries its file digest (`offline (weights 1a2b3c4d)`), so evaluations by a
    retrained judge are never taken for the same judge's."""
    judge = results.get("judge") or {}
    name = str(judge.get("name") or "?")
    digest = judge.get("fingerprint")
    return f"{name} (weights {str(digest)[:8]})" if digest else name


def decoding_label(results: dict[str, Any]) -> str:
    """How an evaluation decoded, in a few words: `greedy, 64 new tokens, DRY 0.8`. Evaluations
    from before the DRY setting existed decoded plain greedy (or sampled) without it."""
    gen = results.get("generation") or {}
    if not gen:
        return "?"
    if gen.get("do_sample"):
        how = f"sampled (temperature {gen.get('temperature')}, top-p {gen.get('top_p')})"
    else:
        how = "greedy"
    parts = [how, f"{gen.get('max_new_tokens', '?')} new tokens"]
    if gen.get("dry_multiplier"):
        parts.append(
            f"DRY {gen['dry_multiplier']}"
            + (
                f" (base {gen.get('dry_base')}, allowed {gen.get('dry_allowed_length')})"
                if (gen.get("dry_base"), gen.get("dry_allowed_length")) != (1.75, 2)
                else ""
            )
        )
    return ", ".join(parts)


def judgements_beside(results_path: Path, results: dict[str, Any]) -> Path | None:
    """The per-item judgements of an evaluation: beside its eval_results.json (where evaluation
    writes them), else in the evaluation's run directory (older evaluations)."""
    candidates = [results_path.parent / JUDGEMENTS_FILE]
    if results.get("run_dir"):
        candidates.append(Path(str(results["run_dir"])).expanduser() / JUDGEMENTS_FILE)
    return next((p for p in candidates if p.is_file()), None)


@dataclass
class Collection:
    """Everything found; what could not be used is kept so the report can say so."""

    evaluated: list[Evaluated] = field(default_factory=list)
    not_evaluated: list[tuple[str, Path]] = field(default_factory=list)
    without_provenance: list[tuple[str, Path]] = field(
        default_factory=list
    )  # (model, results file)
    filtered_out: list[tuple[str, str]] = field(default_factory=list)  # (model, why)
    missing_dirs: list[Path] = field(default_factory=list)
    searched: list[Path] = field(default_factory=list)
    searches: list[Path] = field(default_factory=list)  # search.json of finished searches
    # Models evaluated only on a split of the prompts (a search's dev or report split): not
    # comparable with whole-set evaluations, so shown only in their search's section.
    split_only: list[str] = field(default_factory=list)


def read_model_provenance(path: Path) -> dict[str, Any]:
    """A model folder's `mixmerge.json`, checked (mixmerge.artifacts.Provenance)."""
    return read_artifact(Provenance, path).as_dict()


def read_results(path: Path) -> dict[str, Any]:
    """An `eval_results.json` as `python -m mixmerge.evaluate` writes it, checked for the keys the
    report reads (mixmerge.artifacts.EvalResults: the model evaluated, average and per-language
    harm change and win rate)."""
    return read_artifact(EvalResults, path).as_dict()


# A search's run directory (mixmerge.search) holds its Optuna storage; its `trials` folder holds
# every trial's dev evaluation, of models the search has mostly deleted: read via search.json.
_SEARCH_MARKERS = {SEARCH_FILE, "study.db", "study.journal"}


def walk(roots: Iterable[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """Model folders (holding mixmerge.json), results files and finished searches' search.json
    below `roots`, each once."""
    models: dict[Path, None] = {}
    results: dict[Path, None] = {}
    searches: dict[Path, None] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            # Hidden folders are atomic writes in progress (.tmp-*) or replaced outputs (.old-*).
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _PRUNE)
            if _SEARCH_MARKERS & set(files):
                dirs[:] = [d for d in dirs if d != "trials"]
                if SEARCH_FILE in files:
                    searches[(here / SEARCH_FILE).resolve()] = None
            if PROVENANCE_FILE in files:
                models[here.resolve()] = None
                dirs[:] = []  # a model folder holds no other models
            if RESULTS_FILE in files:
                results[(here / RESULTS_FILE).resolve()] = None
    return list(models), list(results), list(searches)


def _split(results: dict[str, Any]) -> str:
    """Which prompts an evaluation used: `all` (older files do not say), `dev` or `report`."""
    return str((results.get("evalset") or {}).get("split") or "all")


def _created(results: dict[str, Any]) -> str:
    return str(results.get("created") or "")


def collect(
    search_dirs: Sequence[str | Path], judge: str | None = None, base_model: str | None = None
) -> Collection:
    """Every evaluated model below `search_dirs`, with the newest evaluation of each (optionally
    only evaluations by `judge`, only models of `base_model`)."""
    found = Collection()
    roots = []
    for d in search_dirs:
        path = Path(d).expanduser()
        (roots if path.is_dir() else found.missing_dirs).append(path)
    found.searched = roots
    model_dirs, result_files, found.searches = walk(roots)

    by_model: dict[Path, list[tuple[Path, dict[str, Any]]]] = {}
    for path in result_files:
        results = read_results(path)
        # Results beside a model belong to it; a run directory's copy names the model's path.
        owner = (
            path.parent
            if (path.parent / PROVENANCE_FILE).is_file()
            else Path(results["model"]["path"]).expanduser()
        )
        owner = owner.resolve()  # a relative path is relative to where the report runs
        by_model.setdefault(owner, []).append((path, results))

    known = set(model_dirs)
    for owner, items in sorted(by_model.items()):
        if owner not in known:
            reference = str(items[0][1]["model"].get("reference") or owner)
            found.without_provenance.append((reference, items[0][0]))

    for folder in sorted(model_dirs):
        prov = read_model_provenance(folder / PROVENANCE_FILE)
        name = str(prov.get("name") or folder.name)
        description = describe(prov)
        if base_model is not None and description.base_model != base_model:
            found.filtered_out.append(
                (name, f"base model {description.base_model}, not {base_model}")
            )
            continue
        items = by_model.get(folder, [])
        if judge is not None:
            other = {str((r.get("judge") or {}).get("name")) for _, r in items} - {judge}
            items = [(p, r) for p, r in items if (r.get("judge") or {}).get("name") == judge]
            if not items and other:
                found.filtered_out.append(
                    (name, f"evaluated only by judge {', '.join(sorted(other))}")
                )
                continue
        whole = [(p, r) for p, r in items if _split(r) == "all"]
        if items and not whole:
            found.split_only.append(name)
            continue
        items = whole
        if not items:
            found.not_evaluated.append((name, folder))
            continue
        # Newest evaluation; on a tie the copy beside the model (it is written last).
        path, results = max(items, key=lambda item: (_created(item[1]), item[0].parent == folder))
        found.evaluated.append(
            Evaluated(name, folder, prov, description, path, results, evaluations=len(items))
        )
    return found
