"""The search, top to bottom: check the config → open the study → run trials until the budget is
spent (merge → dev evaluation → keep or delete the model) → re-evaluate the Pareto front on the
report split → tables, figure, loggers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mixmerge.artifacts import (
    PROVENANCE_FILE,
    RESULTS_FILE,
    SEARCH_FILE,
    FrontEntry,
    FrontResult,
    SearchCandidate,
    SearchSummary,
    load_provenance,
    validate,
    write_artifact,
)
from mixmerge.config import resolved_config
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.evalsets import SPLITS, check_split, load_eval_set
from mixmerge.instantiators import close_loggers, instantiate_loggers
from mixmerge.io import write_text_atomic
from mixmerge.search import front as fr
from mixmerge.search.space import Candidate, SearchSpace, build_space, suggest
from mixmerge.search.storage import (
    fail_dead_trials,
    heartbeat,
    open_storage,
    storage_file,
    worker_identity,
    worker_lock,
)
from mixmerge.search.trial import (
    delete_model,
    evaluate_config,
    evaluate_split,
    merge_config,
    model_name,
    objectives,
    run_candidate,
    trial_dir,
)

log = logging.getLogger(__name__)

SAMPLERS = ("nsga2", "tpe", "random")
KEEP = ("pareto", "all", "none")
DIRECTIONS = ["minimize", "maximize"]  # harm, win


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MixmergeError(f"{key}={value}: expected an integer ≥ {minimum}")
    return value


def recipe_kind(cfg: DictConfig) -> tuple[str, int]:
    """('objective', 2) or ('language', number of models), from the recipe's keys."""
    recipe = cfg.recipe
    if recipe.get("general") is not None or recipe.get("safety") is not None:
        return "objective", 2
    models = recipe.get("models")
    if models is None or len(models) == 0:
        raise MixmergeError(
            f"recipe={recipe.get('name')}: expected recipe.general and recipe.safety (objective) "
            "or a list recipe.models (language)"
        )
    return "language", len(models)


def check_search(cfg: DictConfig) -> SearchSpace:
    """Every check that needs no model: settings, splits, the space; raises before writing."""
    s = cfg.search
    if s.sampler not in SAMPLERS:
        raise MixmergeError(f"search.sampler={s.sampler}: expected one of {', '.join(SAMPLERS)}")
    if s.keep not in KEEP:
        raise MixmergeError(f"search.keep={s.keep}: expected one of {', '.join(KEEP)}")
    _positive_int(s.budget, "search.budget")
    _positive_int(s.population_size, "search.population_size", 2)
    _positive_int(s.startup_trials, "search.startup_trials", 0)
    for key in ("dev_split", "report_split"):
        if s[key] not in SPLITS:
            raise MixmergeError(f"search.{key}={s[key]}: expected one of {', '.join(SPLITS)}")
    if s.dev_split == s.report_split or "all" in (s.dev_split, s.report_split):
        raise MixmergeError(
            f"search.dev_split={s.dev_split}: overlaps search.report_split={s.report_split} "
            "(candidates must be selected on prompts they are not reported on: dev and report)"
        )
    kind, models = recipe_kind(cfg)
    if s.get("recipe_kind") and kind != s.recipe_kind:
        raise MixmergeError(
            f"recipe={cfg.recipe.name}: a {kind} recipe, but this search is for a {s.recipe_kind} "
            f"recipe (use search={kind})"
        )
    return build_space(s.space, kind, models, str(cfg.recipe.name))


def check_disjoint_splits(cfg: DictConfig) -> dict[str, int]:
    """Load the dev and report prompts as the evaluations will, and refuse any shared prompt."""
    ev = evaluate_config(cfg, Path("."), cfg.search.dev_split, Path(cfg.paths.output_dir))
    _, fraction, split_seed = check_split(ev.evalset)
    languages = list(ev.languages.codes)
    counts = {}
    for kind in ("redteam", "general"):
        ids = {}
        for split in (cfg.search.dev_split, cfg.search.report_split):
            items = load_eval_set(
                kind, ev.evalset[kind], languages, None, ev.seed, split, fraction, split_seed
            )
            ids[split] = {i["id"] for i in items}
            counts[f"{kind}_{split}"] = len(items)
        shared = ids[cfg.search.dev_split] & ids[cfg.search.report_split]
        if shared:
            raise MixmergeError(
                f"evalset.split: the dev and report {kind} prompts overlap ({len(shared)} shared, "
                f"e.g. {sorted(shared)[0]})"
            )
    return counts


def make_sampler(cfg: DictConfig, seed: int) -> Any:
    import optuna

    s = cfg.search
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population_size, seed=seed)
    if s.sampler == "tpe":
        # multivariate + group: a method's parameters are modelled only with that method.
        return optuna.samplers.TPESampler(
            n_startup_trials=s.startup_trials, multivariate=True, group=True, seed=seed
        )
    return optuna.samplers.RandomSampler(seed=seed)


def settings(cfg: DictConfig, space: SearchSpace) -> dict[str, Any]:
    """What makes two runs the same study; a resumed study must match it."""
    return {
        "space": space.as_dict(),
        "recipe": cfg.recipe.name,
        "harm_metric": cfg.search.harm_metric,
        "win_metric": cfg.search.win_metric,
        "dev_split": cfg.search.dev_split,
        "evaluate_overrides": list(cfg.search.evaluate_overrides),
    }


def open_study(cfg: DictConfig, space: SearchSpace) -> Any:
    """Create or continue the study; this worker's sampler seed is the seed plus the number of
    workers that joined before it (so two workers do not propose the same merges)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = cfg.search
    url = str(s.storage)
    storage = open_storage(url, int(s.heartbeat_interval), int(s.grace_period))
    wanted = json.loads(json.dumps(settings(cfg, space)))
    with worker_lock(url):
        study = optuna.create_study(
            storage=storage, study_name=str(s.study_name), directions=DIRECTIONS,
            load_if_exists=True,
        )  # fmt: skip
        if [d.name.lower() for d in study.directions] != DIRECTIONS:
            raise MixmergeError(
                f"search.study_name={s.study_name}: an existing study with other directions"
            )
        stored = study.user_attrs.get("settings")
        if stored is None:
            study.set_user_attr("settings", wanted)
        elif stored != wanted:
            changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
            raise MixmergeError(
                f"search.{'space' if 'space' in changed else changed[0]}: differs from the study "
                f"{s.study_name} in {url} was started with ({', '.join(changed)}); continue it "
                "unchanged or start another (output_name=… or search.study_name=…)"
            )
        joined = int(study.user_attrs.get("workers", 0))
        study.set_user_attr("workers", joined + 1)
    sampler = make_sampler(cfg, int(s.seed) + joined)
    return optuna.load_study(study_name=str(s.study_name), storage=storage, sampler=sampler)


def _completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def points(study: Any) -> list[fr.Point]:
    """Finished trials that merged their own model (repeats of an earlier merge left out)."""
    return [
        fr.Point(
            t.number,
            _candidate(t).method,
            t.values[0],
            t.values[1],
            t.user_attrs["candidate"],
            t.user_attrs.get("model"),
        )  # fmt: skip
        for t in _completed(study)
        if "duplicate_of" not in t.user_attrs and "candidate" in t.user_attrs
    ]


def _candidate(trial: Any) -> SearchCandidate:
    """The merge a stored trial tried, checked (a study written by another version is one line)."""
    return validate(
        SearchCandidate, trial.user_attrs["candidate"], f"trial {trial.number}", "candidate"
    )


def counted(study: Any) -> int:
    """Trials that use the budget: finished, and running ones (a dead worker's were failed)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)))


def duplicate_of(study: Any, candidate: Candidate) -> Any | None:
    key = candidate.key()
    for t in _completed(study):
        if t.user_attrs.get("key") == key and "duplicate_of" not in t.user_attrs:
            return t
    return None


def prune_models(study: Any, keep: str, final: bool = False) -> list[str]:
    """Delete the models `search.keep` does not keep, and those of failed trials; `none` keeps
    the front's models until the front has been reported (final=True)."""
    from optuna.trial import TrialState

    keep_now = "pareto" if keep == "none" and not final else keep
    kept = fr.keep_numbers(points(study), keep_now)
    deleted = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        model = t.user_attrs.get("model")
        if model and "duplicate_of" not in t.user_attrs and t.number not in kept:
            if Path(model).exists():
                deleted.append(model)
            delete_model(model)
    return deleted


def run_trial(cfg: DictConfig, study: Any, space: SearchSpace, trial: Any) -> dict[str, Any]:
    """Sample, merge, evaluate and tell one trial; a failure is told as FAIL and raised."""
    from optuna.trial import TrialState

    candidate = suggest(trial, space)
    trial.set_user_attr("candidate", candidate.as_dict())
    trial.set_user_attr("key", candidate.key())
    earlier = duplicate_of(study, candidate)
    if earlier is not None:
        # The same merge as an earlier trial (e.g. model_stock, which has nothing to tune):
        # its result, without merging or evaluating again.
        trial.set_user_attr("duplicate_of", earlier.number)
        study.tell(trial, list(earlier.values))
        return {"trial": trial.number, "harm": earlier.values[0], "win": earlier.values[1],
                "duplicate_of": earlier.number}  # fmt: skip
    model = Path(cfg.paths.models_dir) / model_name(cfg, trial.number, candidate.method)
    trial.set_user_attr("model", str(model))
    log.info("Trial %d: %s", trial.number, " ".join(candidate.overrides()))
    try:
        with heartbeat(study._storage, trial._trial_id, int(cfg.search.heartbeat_interval)):
            record = run_candidate(cfg, candidate, trial.number)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        delete_model(model)
        raise
    for key in ("merge_seconds", "eval_seconds", "prompts"):
        trial.set_user_attr(key, record[key])
    study.tell(trial, [record["harm"], record["win"]])
    print(f"Trial {trial.number} ({candidate.method}): harm {record['harm']:.3f}, "
          f"win {record['win']:.3f} on the {cfg.search.dev_split} split")  # fmt: skip
    return {"trial": trial.number, "harm": record["harm"], "win": record["win"]}


def report_front(cfg: DictConfig, study: Any) -> tuple[list[fr.Point], dict[int, dict]]:
    """The front on the dev split, each of its models evaluated once on the report split (the
    result is stored with the study, so another worker or a rerun does not evaluate it again)."""
    from mixmerge.merging.pipeline import merge

    front = fr.pareto_front(points(study))
    report: dict[int, dict[str, Any]] = {}
    for p in front:
        stored = study.user_attrs.get(f"report:{p.number}")
        if stored is not None:
            stored = validate(
                FrontResult, stored, f"report:{p.number}", "front result"
            ).model_dump()
        else:
            model = Path(str(p.model))
            if not (model / PROVENANCE_FILE).is_file():  # deleted by hand: merge it again
                candidate = Candidate(**p.candidate)
                merge(merge_config(cfg, candidate, model.name, p.number))
            run_dir = trial_dir(cfg, p.number) / "report"
            results = evaluate_split(cfg, model, cfg.search.report_split, run_dir)
            harm, win = objectives(results, cfg, cfg.search.report_split)
            stored = FrontResult(
                harm=harm, win=win, results=str(run_dir / RESULTS_FILE)
            ).model_dump()
            study.set_user_attr(f"report:{p.number}", stored)
        report[p.number] = stored
    return front, report


def recipe_parents(front: list[fr.Point]) -> list[dict[str, Any]]:
    """The recipe's models as the merges resolved them (from a front model's provenance), so the
    report can find grid merges of the same parents."""
    for p in front:
        prov = load_provenance(p.model) if p.model and Path(p.model).is_dir() else None
        if prov is not None and prov.recipe is not None:
            return [m.model_dump(exclude_unset=True) for m in prov.recipe.models]
    return []


def write_summary(
    cfg: DictConfig,
    study: Any,
    front: list[fr.Point],
    report: dict[int, dict[str, Any]],
    rows: list[dict[str, Any]],
    parents: list[dict[str, Any]],
    run_dir: Path,
) -> Path:
    """search.json: the finished search as `mixmerge.report` reads it."""
    s = cfg.search
    entries = [
        FrontEntry(**row, candidate=p.candidate, report_results=report.get(p.number, {}).get("results"))
        for row, p in zip(rows, front, strict=True)
    ]  # fmt: skip
    summary = SearchSummary(
        study_name=str(s.study_name), run_dir=str(run_dir), recipe=str(cfg.recipe.name),
        parents=parents, harm_metric=str(s.harm_metric), win_metric=str(s.win_metric),
        dev_split=str(s.dev_split), report_split=str(s.report_split), sampler=str(s.sampler),
        budget=int(s.budget), finished=len(_completed(study)), front=entries,
    )  # fmt: skip
    return write_artifact(run_dir / SEARCH_FILE, summary)


def write_trials(study: Any, run_dir: Path) -> Path:
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        c = t.user_attrs.get("candidate") or {}
        rows.append({
            "trial": t.number, "state": t.state.name, "method": c.get("method"),
            "safety_weight": json.dumps(c.get("safety_weight")),
            "parameters": json.dumps(c.get("params", {}), sort_keys=True),
            "harm": t.values[0] if t.values else None, "win": t.values[1] if t.values else None,
            "duplicate_of": t.user_attrs.get("duplicate_of"), "model": t.user_attrs.get("model"),
            "model_kept": bool(t.user_attrs.get("model")) and Path(t.user_attrs["model"]).is_dir(),
        })  # fmt: skip
    path = run_dir / "trials.csv"
    write_text_atomic(path, pd.DataFrame(rows).to_csv(index=False))
    return path


def start_loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers, with the search's config logged."""
    loggers = instantiate_loggers(cfg)
    for logger in loggers:
        logger.log_hyperparams({"config": resolved_config(cfg)})
    return loggers


def finish_loggers(loggers: list[Any], rows: list[dict], figure: Path, summary: dict) -> None:
    import pandas as pd

    for logger in loggers:
        logger.log_metrics({f"search/{k}": float(v) for k, v in summary.items()})
        if hasattr(logger, "log_table") and rows:
            frame = pd.DataFrame(rows).astype(object)
            logger.log_table(key="search/pareto", dataframe=frame.where(frame.notna(), None))
        if hasattr(logger, "log_image"):
            logger.log_image(key="search/pareto", images=[str(figure)])
    close_loggers(loggers)


def search(cfg: DictConfig) -> dict[str, Any]:
    """Run (or continue) one search; returns its summary."""
    space = check_search(cfg)
    prompts = check_disjoint_splits(cfg)
    study = open_study(cfg, space)
    run_dir = Path(cfg.paths.output_dir)
    url, budget = str(cfg.search.storage), int(cfg.search.budget)
    log.info("Search %s: budget %d, prompts per split %s", cfg.search.study_name, budget, prompts)
    loggers = start_loggers(cfg)
    ran = 0
    while True:
        with worker_lock(url):
            fail_dead_trials(study, locked=storage_file(url) is not None)
            prune_models(study, str(cfg.search.keep))
            if counted(study) >= budget:
                break
            trial = study.ask()
            trial.set_user_attr("worker", worker_identity())
        result = run_trial(cfg, study, space, trial)
        ran += 1
        for logger in loggers:
            logger.log_metrics(
                {"trial/harm": result["harm"], "trial/win": result["win"], "trial/number": trial.number},
                step=trial.number,
            )  # fmt: skip
        with worker_lock(url):
            prune_models(study, str(cfg.search.keep))

    with worker_lock(url):
        if len(_completed(study)) < budget:
            # Another worker still runs the last trials: it reports the front when they finish.
            print(f"Budget taken: {counted(study)} trials finished or running; "
                  "the worker that finishes the last one reports the front")  # fmt: skip
            close_loggers(loggers)
            return {"trials_run": ran, "finished": len(_completed(study)), "front": None}
        front, report = report_front(cfg, study)
        parents = recipe_parents(front)
        prune_models(study, str(cfg.search.keep), final=True)
        metrics = (str(cfg.search.harm_metric), str(cfg.search.win_metric))
        rows = fr.front_rows(front, report)
        tables = fr.write_tables(rows, run_dir, metrics)
        write_summary(cfg, study, front, report, rows, parents, run_dir)
        figure = fr.write_figure(points(study), front, report, run_dir / "pareto.png", metrics)
        trials_csv = write_trials(study, run_dir)
    summary = {"trials_run": ran, "finished": len(_completed(study)), "front_size": len(front)}
    finish_loggers(loggers, rows, figure, summary)
    print(f"Pareto front ({len(front)} of {summary['finished']} trials) written to "
          f"{tables[1]}, {tables[0]}, {figure} and {trials_csv}; `python -m mixmerge.report` "
          "shows it beside the grid")  # fmt: skip
    return {**summary, "front": rows, "run_dir": str(run_dir)}
