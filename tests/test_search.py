"""The merge search on tiny random models: the space and its checks, the Pareto front, a whole
search in process (tables, figure, kept models, resume), a kill mid-trial, two workers on one
storage, and bad input as one line."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from mixmerge.config import compose_config
from mixmerge.errors import MixmergeError
from mixmerge.search.front import Point, keep_numbers, pareto_front
from mixmerge.search.run import search
from mixmerge.search.space import build_space, suggest
from mixmerge.search.trial import DEV_RESULTS_FILE
from tests.helpers import ROOT, run_cli
from tests.merge_helpers import make_base, make_finetuned

EVAL = (
    'search.evaluate_overrides=["languages=en","max_prompts_per_language=2",'
    '"generation.max_new_tokens=4","bootstrap.samples=0"]'
)


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family")
    base = make_base(root / "base")
    return {
        "base": base,
        "general": make_finetuned(base, root / "general", seed=1),
        "safety": make_finetuned(base, root / "safety", seed=2),
        "third": make_finetuned(base, root / "third", seed=3),
    }


def overrides(family: dict[str, Path], *extra: str) -> list[str]:
    return [
        f"recipe.general={family['general']}",
        f"recipe.safety={family['safety']}",
        "search.budget=3",
        "search.space.methods=[linear,ties,model_stock]",
        "logger=none",
        EVAL,
        *extra,
    ]


def search_cfg(root: Path, family: dict[str, Path], *extra: str):
    return compose_config("search", overrides(family, *extra), root)


def trials(root: Path) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{root / 'run' / 'study.db'}"
    return optuna.load_study(study_name="search-objective", storage=url).get_trials()


# --- the space ---------------------------------------------------------------------------------


def space(*items: str, kind: str = "objective", models: int = 2):
    cfg = compose_config("search", list(items), Path("/tmp/unused"))
    return build_space(
        cfg.search.space, kind, models, "objective" if kind == "objective" else "language"
    )


def sample(sp, n: int = 40):
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0), directions=["minimize", "maximize"]
    )
    return [suggest(study.ask(), sp) for _ in range(n)]


def test_candidates_follow_each_methods_registry_entry():
    found = {c.method: c for c in sample(space(), 120)}
    assert set(found) == {"linear", "slerp", "nuslerp", "task_arithmetic", "ties", "dare_ties",
                          "dare_linear", "della", "breadcrumbs_ties", "model_stock"}  # fmt: skip
    assert isinstance(found["linear"].safety_weight, float)  # linear takes no gradient
    assert len(found["ties"].safety_weight) == 3 and set(found["ties"].params) == {
        "density",
        "lambda",
    }
    assert found["model_stock"].safety_weight is None and found["model_stock"].params == {}
    assert "merge.safety_weight" not in " ".join(found["model_stock"].overrides())
    assert set(found["della"].params) == {"density", "epsilon", "lambda"}
    for c in sample(space(), 200):
        if c.method == "della":  # mergekit needs density ± epsilon inside (0, 1)
            assert (
                c.params["density"] - c.params["epsilon"] > 0
                and c.params["density"] + c.params["epsilon"] < 1
            )
        for w in c.safety_weight if isinstance(c.safety_weight, list) else [c.safety_weight or 0]:
            assert 0 <= w <= 1 and abs(w / 0.05 - round(w / 0.05)) < 1e-6  # on the 0.05 grid


def test_a_fixed_parameter_and_the_language_recipe():
    sp = space("search.space.params={density: 0.3, lambda: [1.0, 1.0]}", "search.space.gradient=1")
    for c in sample(sp):
        assert c.params.get("density", 0.3) == 0.3 and c.params.get("lambda", 1.0) == 1.0
        assert not isinstance(c.safety_weight, list)
    lang = space("search=language", kind="language", models=6)
    assert all(c.safety_weight is None for c in sample(lang))


BAD_SPACE = [
    (["search.space.methods=[]"], {}, "search.space.methods=[]: expected a non-empty list"),
    (["search.space.methods=[ties,bogus]"], {}, "search.space.methods: unknown method 'bogus'"),
    (["search.space.methods=[slerp,ties]"], {"kind": "language", "models": 6},
     "search.space.methods: slerp merges exactly 2 models; recipe=language names 6"),
    (["search.space.safety_weight=[0.8,0.2]"], {}, "search.space.safety_weight=[0.8, 0.2]: expected [low, high] with 0 ≤ low ≤ high ≤ 1"),
    (["search.space.safety_weight=[0,2]"], {}, "search.space.safety_weight=[0, 2]: expected [low, high]"),
    (["search.space.params={density: [0.9, 0.1]}"], {}, "search.space.params.density=[0.9, 0.1]: expected [low, high] with low ≤ high"),
    (["search.space.methods=[linear,slerp]", "search.space.params={density: 0.5}"], {},
     "search.space.params.density: not a parameter of the searched methods"),
    (["search.space.gradient=0"], {}, "search.space.gradient=0: expected an integer ≥ 1"),
]  # fmt: skip


@pytest.mark.parametrize(("items", "kw", "message"), BAD_SPACE, ids=[m[:40] for *_, m in BAD_SPACE])
def test_an_empty_unknown_or_contradictory_space_is_one_line(items, kw, message):
    with pytest.raises(MixmergeError, match=re.escape(message)):
        space(*items, **kw)


# --- the front ---------------------------------------------------------------------------------


def pt(n: int, method: str, harm: float, win: float) -> Point:
    return Point(n, method, harm, win, {"method": method}, f"/m/{n}")


def test_front_and_kept_models():
    points = [pt(0, "ties", 0.2, 0.6), pt(1, "ties", 0.1, 0.5), pt(2, "linear", 0.3, 0.55),
              pt(3, "linear", 0.25, 0.4), pt(4, "ties", 0.2, 0.6)]  # fmt: skip
    assert [p.number for p in pareto_front(points)] == [1, 0, 4]  # 4 ties 0: neither dominates
    # pareto: the front plus each method's best by win − harm (linear: trial 2, off the front)
    assert keep_numbers(points, "pareto") == {0, 1, 2, 4}
    assert keep_numbers(points, "all") == {0, 1, 2, 3, 4} and keep_numbers(points, "none") == set()


# --- whole searches ----------------------------------------------------------------------------


def test_hypervolume_agrees_with_optunas_and_rewards_domination():
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    from mixmerge.search.front import hypervolume

    assert hypervolume([]) == 0.0 and hypervolume([(0.2, 0.6)]) == pytest.approx(0.8 * 0.6)
    assert hypervolume([(1.2, 0.9), (0.5, -0.1)]) == 0.0  # outside the reference corner
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.random((int(rng.integers(1, 9)), 2))
        # Optuna minimises every objective: harm, and 1 - win against the corner (1, 1).
        theirs = compute_hypervolume(np.c_[pts[:, 0], 1 - pts[:, 1]], np.array([1.0, 1.0]))
        assert hypervolume([tuple(p) for p in pts]) == pytest.approx(theirs, abs=1e-12)
    # A point that dominates a front adds area; a dominated one adds none.
    front = [(0.3, 0.5), (0.5, 0.7)]
    assert hypervolume([*front, (0.2, 0.8)]) > hypervolume(front)
    assert hypervolume([*front, (0.4, 0.4)]) == pytest.approx(hypervolume(front))


def test_a_search_writes_its_front_keeps_models_and_resumes(tmp_path, family, cache_dir):
    summary = search(search_cfg(tmp_path, family, "search.keep=all"))
    run = tmp_path / "run"
    assert summary["finished"] == 3 and summary["trials_run"] == 3
    done = [t for t in trials(tmp_path) if t.state.name == "COMPLETE"]
    assert len(done) == 3
    for name in ("pareto.csv", "pareto.md", "pareto.png", "trials.csv"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    rows = list(csv.DictReader((run / "pareto.csv").open()))
    assert rows and all(r["report_harm"] != "" and r["report_win"] != "" for r in rows)
    assert (run / "pareto.md").read_text().startswith("# Pareto front: harm_rate")
    # Every merged model has a stable name and provenance; the front's carry a report result.
    for t in done:
        if "duplicate_of" in t.user_attrs:
            continue
        model = Path(t.user_attrs["model"])
        assert (
            model.name == f"search-objective-t{t.number:03d}-{t.user_attrs['candidate']['method']}"
        )
        prov = (model / "mixmerge.json").read_text()
        assert '"kind": "merge"' in prov and (model / DEV_RESULTS_FILE).is_file()
    for r in rows:
        assert (Path(r["model"]) / "eval_results.json").is_file()  # the report split's
    # The dev and report evaluations used disjoint prompts.
    t0 = run / "trials" / "t000"
    dev_ids = {
        line.split('"id": "')[1].split('"')[0]
        for line in (t0 / "dev" / "generations_model.jsonl").open()
    }
    if (t0 / "report").is_dir():
        rep_ids = {
            line.split('"id": "')[1].split('"')[0]
            for line in (t0 / "report" / "generations_model.jsonl").open()
        }
        assert dev_ids and rep_ids and not dev_ids & rep_ids

    # Rerun: nothing left to do; a larger budget adds exactly the difference.
    assert search(search_cfg(tmp_path, family, "search.keep=all"))["trials_run"] == 0
    assert (
        search(search_cfg(tmp_path, family, "search.keep=all", "search.budget=4"))["trials_run"]
        == 1
    )
    assert sum(t.state.name == "COMPLETE" for t in trials(tmp_path)) == 4
    # A changed space is another study: refused rather than mixed in.
    with pytest.raises(
        MixmergeError, match=re.escape("search.space: differs from the study search-objective")
    ):
        search(search_cfg(tmp_path, family, "search.space.methods=[linear]"))


def test_a_language_search_with_keep_none_deletes_every_model_after_the_front(
    tmp_path, family, cache_dir
):
    models = ",".join(str(family[k]) for k in ("general", "safety", "third"))
    cfg = compose_config(
        "search",
        ["search=language", "recipe=language", f"recipe.models=[{models}]", "search.budget=2",
         "search.space.methods=[ties,model_stock]", "search.keep=none", "logger=csv", EVAL],
        tmp_path,
    )  # fmt: skip
    summary = search(cfg)
    done = optuna.load_study(
        study_name="search-language", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    ).get_trials()
    assert all(t.user_attrs["candidate"]["safety_weight"] is None for t in done)
    prov = [t.user_attrs.get("model") for t in done]
    assert summary["front_size"] >= 1 and any(prov)
    assert not [m for m in prov if m and Path(m).exists()]
    assert (tmp_path / "run" / "pareto.csv").is_file()
    # Every trial reaches the configured loggers (W&B by default; CSV here, no network either way).
    logged = next((tmp_path / "run").rglob("metrics.csv")).read_text()
    assert "trial/harm" in logged and "search/front_size" in logged


BAD_RUN = [
    (["search.storage=bogus://nowhere"], "search.storage=bogus://nowhere: cannot be opened"),
    (["search.dev_split=all"], "search.dev_split=all: overlaps search.report_split=report"),
    (["search.report_split=dev"], "search.dev_split=dev: overlaps search.report_split=dev"),
    (["search.sampler=cmaes"], "search.sampler=cmaes: expected one of nsga2, tpe, random"),
    (["search.budget=0"], "search.budget=0: expected an integer ≥ 1"),
    (["search=language"], "recipe=objective: a objective recipe, but this search is for a language recipe"),
    (["search.space.methods=[ties,nope]"], "search.space.methods: unknown method 'nope'"),
    (['search.evaluate_overrides=["evalset.dev_fraction=1.5"]'], "evalset.dev_fraction=1.5: expected a number strictly between 0 and 1"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "message"), BAD_RUN, ids=[m[:40] for _, m in BAD_RUN])
def test_bad_search_input_is_one_line_and_writes_nothing(tmp_path, family, extra, message):
    with pytest.raises(MixmergeError, match=re.escape(message)):
        search(search_cfg(tmp_path, family, *extra))
    assert not (tmp_path / "models").exists()
    assert not (tmp_path / "run" / "pareto.csv").exists()


def cli_args(root: Path, family: dict[str, Path], *extra: str) -> list[str]:
    return [*overrides(family, *extra), f"hydra.run.dir={root / 'run'}",
            f"paths.models_dir={root / 'models'}"]  # fmt: skip


def test_cli_bad_storage_is_one_line_exit_2(tmp_path, family, cache_dir):
    proc = run_cli(
        "mixmerge.search",
        *cli_args(tmp_path, family, "search.storage=bogus://nowhere"),
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("mixmerge: error: search.storage=bogus://nowhere: cannot be opened")
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_a_search_killed_mid_trial_resumes_without_losing_finished_trials(
    tmp_path, family, cache_dir
):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixmerge.search", *cli_args(tmp_path, family, "search.keep=all")],
        cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr").open("w"),
    )  # fmt: skip
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            # Touch the database only once the worker has opened it (two processes creating the
            # schema at once race).
            if (tmp_path / "run" / "trials" / "t000").exists():
                try:
                    states = [t.state.name for t in trials(tmp_path)]
                except Exception:  # the study is being created
                    states = []
                if states.count("COMPLETE") >= 1 and states[-1] == "RUNNING":
                    break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = trials(tmp_path)
    finished = [t.number for t in before if t.state.name == "COMPLETE"]
    killed = [t.number for t in before if t.state.name == "RUNNING"]
    assert finished and len(killed) == 1

    summary = search(search_cfg(tmp_path, family, "search.keep=all"))
    after = {t.number: t for t in trials(tmp_path)}
    assert after[killed[0]].state.name == "FAIL"  # the interrupted trial never counts as finished
    assert all(after[n].state.name == "COMPLETE" for n in finished)  # nothing finished is redone
    assert sum(t.state.name == "COMPLETE" for t in after.values()) == 3
    assert summary["trials_run"] == 3 - len(finished)
    # The killed trial's model (or its half-written folder) is gone.
    method = after[killed[0]].user_attrs.get("candidate", {}).get("method", "")
    assert not list((tmp_path / "models").glob(f"*t{killed[0]:03d}*")) and not list(
        (tmp_path / "models").glob(f".tmp-*t{killed[0]:03d}-{method}*")
    )


@pytest.mark.slow
def test_two_workers_share_one_journal_study(tmp_path, family, cache_dir):
    journal = tmp_path / "run" / "study.journal"
    args = cli_args(tmp_path, family, "search.budget=4", f"search.storage=journal:{journal}")
    workers = [
        subprocess.Popen([sys.executable, "-m", "mixmerge.search", *args], cwd=tmp_path, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs[0][-2000:] + outputs[1][-2000:]
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="search-objective",
                              storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))  # fmt: skip
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") == 4 and len(states) == 4  # exactly the budget, shared
    assert study.user_attrs["workers"] == 2
    workers_seen = {t.user_attrs["worker"]["pid"] for t in study.get_trials()}
    assert len(workers_seen) == 2  # both did trials
    assert (tmp_path / "run" / "pareto.csv").is_file()


def test_only_trials_of_dead_workers_are_failed(tmp_path):
    from mixmerge.search.storage import fail_dead_trials, open_storage, worker_identity

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", 60, 180)
    study = optuna.create_study(storage=storage, directions=["minimize", "maximize"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = {**worker_identity(), "pid": dead.pid}
    alive, killed, unnamed = study.ask(), study.ask(), study.ask()
    alive.set_user_attr("worker", worker_identity())
    killed.set_user_attr("worker", gone)
    # Without the lock, an unnamed trial may be another worker's between ask and naming.
    assert fail_dead_trials(study, locked=False) == [killed.number]
    assert fail_dead_trials(study, locked=True) == [unnamed.number]
    states = [t.state.name for t in study.get_trials()]
    assert states == ["RUNNING", "FAIL", "FAIL"]


# --- the report: the search's front beside the grid --------------------------------------------


def _grid_merge_evaluated(tmp_path: Path, family: dict[str, Path], weight: float) -> str:
    """A grid merge of the search's parents, evaluated on every English prompt (as a study does)."""
    from omegaconf import open_dict

    from mixmerge.evaluation.run import evaluate
    from mixmerge.merging.pipeline import merge

    def cfg(name: str, *items: str):
        c = compose_config(name, list(items), tmp_path / f"grid-{name}-{weight}")
        with open_dict(c):
            c.paths.models_dir = str(tmp_path / "models")
        return c

    out = f"grid-linear-w{weight}"
    merge(cfg("merge", f"recipe.general={family['general']}", f"recipe.safety={family['safety']}",
              "merge=linear", f"merge.safety_weight={weight}", f"output_name={out}", "logger=none"))  # fmt: skip
    evaluate(cfg("evaluate", f"model_ref={out}", "languages=en", "max_prompts_per_language=null",
                 "generation.max_new_tokens=4", "bootstrap.samples=0", "logger=none"))  # fmt: skip
    return out


def test_the_report_shows_the_search_front_beside_the_grid(tmp_path, family, cache_dir):
    import json

    from mixmerge.reporting.run import report
    from mixmerge.reporting.searches import rates, restrict

    search(search_cfg(tmp_path, family, "search.budget=2", "search.space.methods=[linear,ties]"))
    run = tmp_path / "run"
    summary = json.loads((run / "search.json").read_text())
    assert summary["front"] and {m["key"] for m in summary["parents"]} == {
        "recipe.general", "recipe.safety",
    }  # fmt: skip
    grid = [_grid_merge_evaluated(tmp_path, family, w) for w in (0.3, 0.7)]

    rep = tmp_path / "report"
    cfg = compose_config(
        "report",
        [f"search_dirs=[{tmp_path / 'models'},{run}]", "latest_dir=null", "paired.samples=50"],
        rep,
    )
    report(cfg)
    text = (rep / "run" / "report.md").read_text()
    assert "## Searched merges" in text and "### search-objective" in text
    assert "Hypervolume" in text and "grid (0 < w < 1)" in text
    assert (rep / "run" / "search_search-objective.png").stat().st_size > 0
    rows = list(csv.DictReader((rep / "run" / "search.csv").open()))
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], set()).add(r["model"])
    assert by_source["grid"] == set(grid)
    assert len(by_source["search"]) == len(summary["front"])
    # The searched models (report-split evaluations) stay out of the whole-set tables.
    assert "evaluated only on a dev or report split" in text
    main = (rep / "run" / "models.csv").read_text()
    assert "search-objective-t" not in main and "grid-linear-w0.3" in main

    # A grid merge is re-scored on exactly the front's report-split prompts: its harm rate there
    # is recomputed by hand from its judgements and the front's prompt ids.
    from mixmerge.evaluation.paired import read_verdicts

    front_results = Path(summary["front"][0]["report_results"])
    front = read_verdicts(front_results.parent / "judgements.jsonl")
    mine = read_verdicts(tmp_path / "models" / grid[0] / "judgements.jsonl")
    assert set(front.harm) < set(mine.harm)  # the report split is a part of every prompt
    sub = restrict(mine, set(front.harm), set(front.wins))
    harmful = [mine.harm[k] for k in front.harm if mine.harm[k] is not None]
    expected = sum(harmful) / len(harmful)
    row = next(r for r in rows if r["model"] == grid[0])
    assert abs(float(row["harm"]) - expected) < 1e-9 and abs(rates(sub)[0] - expected) < 1e-9


def test_a_malformed_search_json_is_one_line_in_the_report_not_a_crash(tmp_path):
    from mixmerge.reporting.run import report

    run = tmp_path / "outputs" / "search" / "broken"
    run.mkdir(parents=True)
    (run / "search.json").write_text('{"study_name": "broken"}')
    cfg = compose_config(
        "report", [f"search_dirs=[{tmp_path / 'outputs'}]", "latest_dir=null"], tmp_path
    )
    report(cfg)
    text = (tmp_path / "run" / "report.md").read_text()
    assert "### broken" in text
    assert f"{run / 'search.json'}: malformed search.json" in text
