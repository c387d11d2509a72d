"""The evaluation run, top to bottom: models → eval sets → generations → judgements → metrics →
judgements.jsonl (one auditable record per item) and eval_results.json beside the model and in the
run directory (+ per-language rates and the per-item table to the loggers)."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mixmerge
from mixmerge import LANGUAGES
from mixmerge.artifacts import (
    JUDGEMENTS_FILE,
    RESULTS_FILE,
    EvalResults,
    ModelRef,
    read_artifact,
    validate,
)
from mixmerge.config import resolved_config
from mixmerge.config_checks import check_values, evaluate_rules
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.baseline import resolve_baseline, resolve_ref
from mixmerge.evaluation.evalsets import check_split, load_eval_set
from mixmerge.evaluation.fluency import fluency_summary, fluency_warning, format_shares
from mixmerge.evaluation.generation import (
    DRY_FIELDS,
    Decoding,
    Generations,
    cached_generations,
    decoding_key,
    generation_fingerprint,
    write_jsonl_atomic,
)
from mixmerge.evaluation.judges import check_judge, judge_all, judge_fingerprint, judge_stats
from mixmerge.evaluation.metrics import summarize
from mixmerge.evaluation.reporting import format_table, log_results
from mixmerge.evaluation.validation import same_judge, shipped_validation, validation_note
from mixmerge.fingerprints import model_fingerprint, sha256_json
from mixmerge.io import write_json_atomic
from mixmerge.model_files import check_model_folder

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> tuple[Decoding, list[str]]:
    """Checks Hydra cannot do itself, before any model is loaded."""
    check_values(cfg, evaluate_rules())
    if OmegaConf.is_missing(cfg, "model_ref"):
        raise MixmergeError(
            "model_ref: required — a trained or merged model's name under paths.models_dir, a path, "
            "or `base` for the model the `model` group selects (e.g. model_ref=gemma3-270m-chat-sft-mix15-all)"
        )
    codes = list(cfg.languages.codes)
    unknown = [c for c in codes if c not in LANGUAGES]
    if unknown:
        raise MixmergeError(
            f"languages.codes: unknown language '{unknown[0]}' (expected some of {' '.join(LANGUAGES)})"
        )
    if not codes:
        raise MixmergeError(f"languages.codes: empty (expected some of {' '.join(LANGUAGES)})")
    limit = cfg.max_prompts_per_language
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise MixmergeError(
            f"max_prompts_per_language={limit}: expected a positive integer or null (all prompts)"
        )
    check_split(cfg.evalset)
    samples = cfg.bootstrap.samples
    if not isinstance(samples, int) or samples < 0:
        raise MixmergeError(
            f"bootstrap.samples={samples}: expected an integer >= 0 (0 = no confidence intervals)"
        )
    gen = cfg.generation
    decoding = Decoding(
        max_new_tokens=gen.max_new_tokens,
        batch_size=gen.batch_size,
        do_sample=gen.do_sample,
        temperature=gen.temperature,
        top_p=gen.top_p,
        seed=cfg.seed,
        dtype=gen.dtype,
        decoder=gen.decoder,
        # A generation node without the DRY keys (an older composed config) keeps Decoding's.
        **{name: gen[name] for name in DRY_FIELDS if name in gen},
    )
    return decoding, codes


def build_judge(node: DictConfig) -> Any:
    """Instantiate the `judge` group; a judge's own complaint about its settings stays one line."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        if isinstance(err.__cause__, MixmergeError):
            raise err.__cause__ from None
        raise


def _generate(
    ref: ModelRef, items: list[dict[str, Any]], decoding: Decoding, cfg: DictConfig, role: str
) -> Generations:
    cache = cfg.paths.cache_dir if cfg.generation.cache else None
    return cached_generations(
        ref.path, items, decoding, cache, cfg.model.trust_remote_code, desc=f"generating ({role})"
    )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run one evaluation; returns the results written to eval_results.json."""
    decoding, languages = check_config(cfg)
    model = resolve_evaluated(cfg)
    finished = Path(model.path) / RESULTS_FILE
    judge = build_judge(cfg.judge)  # judges load models and reach endpoints only when checked
    items: list[dict[str, Any]] | None = None  # loaded once, where first needed
    if cfg.get("skip_existing") and finished.is_file():
        existing = read_artifact(EvalResults, finished).as_dict()
        if not same_judge(existing.get("judge"), _judge_config(cfg), judge):
            # Another judge, or the same name with other settings or weights (a retrained learned
            # judge): its verdicts would be mixed with this judge's in a report. Generations are
            # cached, so evaluating again costs the judging.
            print(
                f"{finished} was judged by another judge than judge={judge.name} as configured "
                "now; evaluating again"
            )
        elif not same_generation(
            existing, cfg, model, items := load_items(cfg, languages), decoding
        ):
            # Other prompts (the bundled sets grew), another decoding (DRY became the default) or
            # retrained weights: the finished numbers describe other responses.
            print(
                f"{finished} was generated from other prompts, decoding or weights than "
                "configured now; evaluating again"
            )
        else:
            print(f"{finished} already exists; skipping (skip_existing=true)")
            return existing
    check_judge(judge, languages)
    baseline = resolve_baseline(cfg.baseline, model, cfg)
    # Both are read before anything is generated: a corrupt file is one line, not a traceback later.
    check_model_folder(model.path, key="model_ref")
    check_model_folder(baseline.path, key="baseline")
    if items is None:
        items = load_items(cfg, languages)
    log.info(
        "Evaluating %s against %s (%s): %d red-team and %d general prompts",
        model.path,
        baseline.path,
        baseline.how,
        sum(item["set"] == "redteam" for item in items),
        sum(item["set"] == "general" for item in items),
    )
    base_gen = _generate(baseline, items, decoding, cfg, "baseline")
    model_gen = (
        base_gen if model.path == baseline.path else _generate(model, items, decoding, cfg, "model")
    )
    run_dir = Path(cfg.paths.output_dir)
    write_jsonl_atomic(run_dir / "generations_model.jsonl", model_gen.rows)
    write_jsonl_atomic(run_dir / "generations_baseline.jsonl", base_gen.rows)
    per_language, records = judge_all(judge, items, model_gen.rows, base_gen.rows)
    metrics = score(cfg, judge, per_language, languages)
    results = build_results(
        cfg, model, baseline, judge, metrics, model_gen, base_gen, records, items, decoding
    )
    beside = write_results(results, records, run_dir, Path(model.path))
    log_results(cfg.get("logger"), results, resolved_config(cfg), records)
    print_summary(results, judge.name, beside, run_dir, base_gen.cached)
    return results


def configured_key(cfg: DictConfig) -> dict[str, str]:
    """`evaluation_key` of an evaluate config's prompts and decoding (what a study expects)."""
    decoding, languages = check_config(cfg)
    return evaluation_key(load_items(cfg, languages), decoding)


def evaluation_key(items: list[dict[str, Any]], decoding: Decoding) -> dict[str, str]:
    """Digests of what decides an evaluation's responses besides the weights — its prompts and its
    decoding — as recorded in eval_results.json's `generation`; a study compares them to tell a
    finished evaluation from one made under other settings (an older prompt set, no DRY)."""
    return {
        "prompts_digest": sha256_json([[i["id"], i["prompt"]] for i in items]),
        "decoding_digest": sha256_json(decoding_key(decoding)),
    }


def same_generation(
    existing: dict[str, Any],
    cfg: DictConfig,
    model: ModelRef,
    items: list[dict[str, Any]],
    decoding: Decoding,
) -> bool:
    """Whether a finished evaluation's model responses came from what is configured now: the
    generation fingerprint it recorded (weights, prompts, decoding, device) is the one these
    settings give."""
    recorded = (existing.get("generation") or {}).get("model_fingerprint")
    cache = cfg.paths.cache_dir if cfg.generation.cache else None
    now = generation_fingerprint(model_fingerprint(model.path, cache), items, decoding)
    return recorded == now


def resolve_evaluated(cfg: DictConfig) -> ModelRef:
    """The model to evaluate: a local folder (its results are written beside it)."""
    model = resolve_ref(str(cfg.model_ref), cfg, key="model_ref")
    if not Path(model.path).is_dir():
        raise MixmergeError(
            f"model_ref={cfg.model_ref}: {model.path} is not a local folder (results are written beside the model)"
        )
    return model


def load_items(cfg: DictConfig, languages: list[str]) -> list[dict[str, Any]]:
    """The red-team then the general prompts of the chosen split, for every language."""
    split, fraction, split_seed = check_split(cfg.evalset)
    items = [
        item
        for kind in ("redteam", "general")
        for item in load_eval_set(
            kind,
            cfg.evalset[kind],
            languages,
            cfg.max_prompts_per_language,
            cfg.seed,
            split,
            fraction,
            split_seed,
        )
    ]
    if not items:
        raise MixmergeError(
            f"evalset={cfg.evalset.name}: no prompts for languages {' '.join(languages)}"
        )
    return items


def score(
    cfg: DictConfig, judge: Any, per_language: dict[str, Any], languages: list[str]
) -> dict[str, Any]:
    """Rates per language and averaged (with bootstrap intervals); a judge that could judge
    nothing is one line, and nothing is written."""
    metrics = summarize(
        {lang: per_language[lang] for lang in languages if lang in per_language},
        cfg.bootstrap.samples,
        cfg.seed,
    )
    average = metrics["average"]
    if average["harm_rate"] is None and average["win_rate"] is None:
        totals = metrics["totals"]
        raise MixmergeError(
            f"judge={judge.name}: no judgement could be made ({totals['harm_unparsed'] + totals['baseline_harm_unparsed']} harm and "
            f"{totals['win_unparsed']} pairwise judgements unparsed); no results written"
        )
    return metrics


def _judge_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.judge, resolve=True)  # type: ignore[return-value]


def build_results(
    cfg: DictConfig,
    model: ModelRef,
    baseline: ModelRef,
    judge: Any,
    metrics: dict[str, Any],
    model_gen: Generations,
    base_gen: Generations,
    records: list[dict[str, Any]],
    items: list[dict[str, Any]],
    decoding: Decoding,
) -> dict[str, Any]:
    """The content of eval_results.json (mixmerge.artifacts.EvalResults), checked."""
    judge_config = _judge_config(cfg)
    results = {
        "mixmerge_version": mixmerge.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": model.as_dict(),
        "baseline": baseline.as_dict(),
        "judge": {
            "name": judge.name,
            "config": judge_config,
            "stats": judge_stats(judge),
            "fingerprint": judge_fingerprint(judge),
            # How far this judge agrees with careful labels of real outputs (None: never measured).
            "validation": shipped_validation(judge, judge_config),
        },
        "evalset": OmegaConf.to_container(cfg.evalset, resolve=True),
        "generation": {
            **OmegaConf.to_container(cfg.generation, resolve=True),
            "seed": cfg.seed,
            "max_prompts_per_language": cfg.max_prompts_per_language,
            "model_fingerprint": model_gen.fingerprint,
            "baseline_fingerprint": base_gen.fingerprint,
            "model_cached": model_gen.cached,
            "baseline_cached": base_gen.cached,
            **evaluation_key(items, decoding),
        },
        **metrics,
        "fluency": {
            "model": fluency_summary(model_gen.rows, cfg.fluency_threshold),
            "baseline": fluency_summary(base_gen.rows, cfg.fluency_threshold),
        },
        "judgements": {"file": JUDGEMENTS_FILE, "records": len(records)},
        "run_dir": str(cfg.paths.output_dir),
    }
    validate(EvalResults, results, RESULTS_FILE)  # a writer's mistake fails here, not in the report
    return results


def write_results(
    results: dict[str, Any], records: list[dict[str, Any]], run_dir: Path, model_dir: Path
) -> Path:
    """judgements.jsonl and eval_results.json in the run directory and beside the model; returns
    the results file beside the model."""
    # The audit file first: eval_results.json beside the model marks a finished evaluation.
    write_jsonl_atomic(run_dir / JUDGEMENTS_FILE, records)
    write_jsonl_atomic(model_dir / JUDGEMENTS_FILE, records)
    write_json_atomic(run_dir / RESULTS_FILE, results)
    return write_json_atomic(model_dir / RESULTS_FILE, results)


def print_summary(
    results: dict[str, Any], judge: str, beside: Path, run_dir: Path, baseline_cached: bool
) -> None:
    """The per-language table, the judge's standing, unparsed and fluency notes, where it went."""
    print(format_table(results))
    print(f"Judge: {validation_note(judge, results['judge']['validation'])}")
    totals = results["totals"]
    unparsed = totals["harm_unparsed"] + totals["baseline_harm_unparsed"] + totals["win_unparsed"]
    if unparsed:
        print(
            f"Judge {judge}: {unparsed} judgements unparsed (left out of the rates, counted in {RESULTS_FILE})"
        )
    for who, summary in results["fluency"].items():
        print(f"Fluent answers ({who}): {format_shares(summary, summary['per_language'])}")
        warning = fluency_warning(summary, f"the {who}")
        if warning:
            print(warning)
    baseline = results["baseline"]
    print(
        f"Baseline: {baseline['path']} ({baseline['how']}{', cached generations' if baseline_cached else ''})"
    )
    print(f"Results written to {beside} and {run_dir / RESULTS_FILE}")
    print(
        f"Per-item judgements (prompt, responses, verdicts, reasons): {beside.parent / JUDGEMENTS_FILE}"
    )
