"""The evaluation run in process on tiny models: end to end against itself, baselines found through
provenance, cached baseline generations, the local-LM judge, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from mixmerge.artifacts import ModelRef
from mixmerge.config import compose_config, resolved_config
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.judges import Judge
from mixmerge.evaluation.recorded_judge import SECOND_READER
from mixmerge.evaluation.run import evaluate
from mixmerge.lineage import find_baseline
from mixmerge.modeling import ensure_tiny_random, resolve_model
from mixmerge.provenance import parent_entry, write_provenance
from tests.helpers import CONF

FAST = [
    "model=tiny_random",
    "max_prompts_per_language=2",
    "generation.max_new_tokens=8",
    "bootstrap.samples=50",
]


def eval_cfg(root: Path, *overrides: str):
    return compose_config("evaluate", [*FAST, *overrides], root)


def child(base: Path, dest: Path, provenance: dict, shift: float = 0.3) -> Path:
    """A 'trained' or 'merged' copy of `base`: one weight shifted, and a provenance file."""
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("eval_results.json", "mixmerge.json"))
    weights = load_file(dest / "model.safetensors")
    name = next(n for n in weights if "embed_tokens" in n)
    weights[name] = weights[name] + shift
    save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})
    write_provenance(dest, **provenance)
    return dest


@pytest.fixture
def family(tmp_path, cache_dir) -> dict[str, Path]:
    """base (no provenance) ← sft (train) ← dpo (train); merge of sft and dpo with base `base`."""
    cfg = eval_cfg(tmp_path, "model_ref=base")
    base = Path(resolve_model(cfg.model, cfg.paths.models_dir))
    models = tmp_path / "models"
    sft = child(
        base, models / "tiny-sft", {"kind": "train", "parent": parent_entry("tiny-random", base)}
    )
    dpo = child(
        sft,
        models / "tiny-dpo",
        {"kind": "train", "parent": parent_entry("tiny-sft", sft)},
        shift=0.2,
    )
    merge = child(
        base,
        models / "merge-x",
        {
            "kind": "merge",
            "base": parent_entry("tiny-random", base),
            "parents": [parent_entry("tiny-sft", sft), parent_entry("tiny-dpo", dpo)],
        },
        shift=0.1,
    )
    orphan = child(
        base,
        models / "merge-y",
        {"kind": "merge", "base": None, "parents": [parent_entry("tiny-dpo", dpo)]},
        shift=0.4,
    )
    return {"base": base, "sft": sft, "dpo": dpo, "merge": merge, "orphan": orphan}


def test_tiny_model_against_itself_end_to_end(tmp_path, cache_dir):
    cfg = eval_cfg(tmp_path, "model_ref=base")
    results = evaluate(cfg)
    assert results["average"]["win_rate"] == 0.5 and results["average"]["win_rate_pct"] == 50.0
    assert results["average"]["harm_change_pct"] == 0.0
    assert set(results["languages"]) == {"en", "fr", "es", "hi", "ar", "ru"}
    for values in results["languages"].values():
        assert values["win_rate"] == 0.5 and values["harm_change_pct"] == 0.0
        assert values["harm_rate"] == values["baseline_harm_rate"]
        assert (
            values["n_redteam"] == 2
            and values["n_general"] == 2
            and values["win_rate_ci"] == [0.5, 0.5]
        )
    assert (
        results["baseline"]["how"] == "self"
        and results["baseline"]["path"] == results["model"]["path"]
    )
    assert results["judge"]["name"] == "offline" and results["generation"]["max_new_tokens"] == 8

    run_dir = Path(cfg.paths.output_dir)
    beside = Path(results["model"]["path"]) / "eval_results.json"
    assert json.loads(beside.read_text()) == json.loads((run_dir / "eval_results.json").read_text())
    generations = [
        json.loads(line) for line in (run_dir / "generations_model.jsonl").read_text().splitlines()
    ]
    assert len(generations) == 24 and {"id", "language", "task", "prompt", "response"} <= set(
        generations[0]
    )
    judgements = [
        json.loads(line) for line in (run_dir / "judgements.jsonl").read_text().splitlines()
    ]
    assert len(judgements) == 24 and not list(run_dir.glob(".*.tmp"))
    # The audit file beside the model is the same, and each record carries what a person needs.
    assert (beside.parent / "judgements.jsonl").read_text() == (
        run_dir / "judgements.jsonl"
    ).read_text()
    assert results["judgements"] == {"file": "judgements.jsonl", "records": 24}
    by_id = {g["id"]: g for g in generations}
    redteam = [j for j in judgements if j["set"] == "redteam"]
    general = [j for j in judgements if j["set"] == "general"]
    assert len(redteam) == len(general) == 12
    for j in judgements:
        assert j["prompt"] == by_id[j["id"]]["prompt"] and j["language"] in results["languages"]
        assert j["response"] == by_id[j["id"]]["response"] == j["baseline_response"]  # itself
    for j in redteam:
        assert isinstance(j["harmful"], bool) and j["harmful"] == j["baseline_harmful"]
        # The offline (learned) judge's reason: its probability and the cues it weighed.
        assert j["harm_reason"].startswith("P(harmful)=")
    for j in general:
        assert j["win"] == 0.5 and j["win_reason"] == "identical responses" and j["reference"]


def test_baselines_are_found_through_provenance(family):
    def baseline(name: str) -> ModelRef:
        return find_baseline(ModelRef(name, str(family[name])))

    assert baseline("sft").path == str(family["base"]) and baseline("sft").how == "provenance"
    assert baseline("dpo").lineage == [str(family["dpo"]), str(family["sft"]), str(family["base"])]
    assert baseline("merge").path == str(family["base"])  # the merge's base
    assert baseline("orphan").lineage[1] == str(family["dpo"]) and baseline("orphan").path == str(
        family["base"]
    )
    assert baseline("base").how == "self"
    shutil.rmtree(family["sft"])
    with pytest.raises(
        MixmergeError,
        match=r"baseline: .*tiny-dpo descends from .*tiny-sft .* not a folder here; pass baseline=",
    ):
        baseline("dpo")


def test_twenty_merges_against_one_base_generate_the_base_once(tmp_path, family):
    overrides = ["languages=en_fr_es", f"paths.cache_dir={tmp_path / 'fresh-cache'}"]
    first = evaluate(eval_cfg(tmp_path, "model_ref=tiny-sft", *overrides))
    assert (
        first["baseline"]["path"] == str(family["base"])
        and first["baseline"]["how"] == "provenance"
    )
    assert not first["generation"]["baseline_cached"] and not first["generation"]["model_cached"]
    second = evaluate(eval_cfg(tmp_path, "model_ref=merge-x", *overrides))
    assert second["generation"]["baseline_cached"] and not second["generation"]["model_cached"]
    assert (
        second["generation"]["baseline_fingerprint"] == first["generation"]["baseline_fingerprint"]
    )
    assert len(list((tmp_path / "fresh-cache" / "generations").glob("*.jsonl"))) == 3
    assert (family["merge"] / "eval_results.json").is_file() and (
        family["sft"] / "eval_results.json"
    ).is_file()


def test_explicit_baseline_and_base_keyword(tmp_path, family):
    results = evaluate(
        eval_cfg(tmp_path, "model_ref=tiny-dpo", f"baseline={family['sft']}", "languages=en")
    )
    assert results["baseline"] == {
        "reference": str(family["sft"]),
        "path": str(family["sft"]),
        "how": "given",
        "lineage": [],
    }
    results = evaluate(eval_cfg(tmp_path, "model_ref=tiny-dpo", "baseline=base", "languages=en"))
    assert (
        results["baseline"]["path"] == str(family["base"]) and results["baseline"]["how"] == "base"
    )
    assert 0 <= results["languages"]["en"]["win_rate"] <= 1


def test_local_lm_judge_counts_unparsed_replies(tmp_path, family):
    # A random tiny model never answers "Verdict: …": every harm judgement is re-asked, then counted
    # as unparsed and reported; identical responses need no pairwise judge, so a win rate remains.
    judge = [
        "judge=hf_local",
        f"judge.model={family['base']}",
        "judge.max_new_tokens=4",
        "judge.parse_retries=1",
    ]
    results = evaluate(eval_cfg(tmp_path, "model_ref=base", "languages=en", *judge))
    en = results["languages"]["en"]
    assert (
        en["harm_rate"] is None and en["harm_unparsed"] == 2 and en["baseline_harm_unparsed"] == 2
    )
    assert en["win_rate"] == 0.5
    assert results["judge"]["stats"]["unparsed"] == 4 and results["judge"]["stats"]["reasked"] == 4
    # The audit file keeps the raw reply that could not be parsed, and the unparsed verdict as null.
    audit = [json.loads(x) for x in (family["base"] / "judgements.jsonl").read_text().splitlines()]
    harm = [j for j in audit if j["set"] == "redteam"]
    assert all(j["harmful"] is None and isinstance(j["harm_reason"], str) for j in harm)
    # With nothing left to compute, the run stops and writes nothing beside the model.
    results_file = family["sft"] / "eval_results.json"
    with pytest.raises(
        MixmergeError,
        match=r"judge=hf_local: no judgement could be made \(4 harm and 2 pairwise judgements unparsed\)",
    ):
        evaluate(eval_cfg(tmp_path, "model_ref=tiny-sft", "languages=en", *judge))
    assert not results_file.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "model_ref: required"),
        (["model_ref=/no/such/model"], "model_ref=/no/such/model: no such model"),
        (["model_ref=base", "baseline=nope"], "baseline=nope: no such model"),
        (["model_ref=base", "languages.codes=[en,xx]"], "languages.codes: unknown language 'xx'"),
        (
            ["model_ref=base", "max_prompts_per_language=0"],
            "max_prompts_per_language=0: expected a positive integer or null",
        ),
        (
            ["model_ref=base", "bootstrap.samples=-5"],
            "bootstrap.samples=-5: expected an integer >= 0",
        ),
        (
            ["model_ref=base", "generation.batch_size=0"],
            "generation.batch_size=0: expected a positive integer",
        ),
        (
            ["model_ref=base", "judge=openai_compatible", "judge.base_url=localhost:8000"],
            "judge.base_url=localhost:8000: expected an http",
        ),
        (
            ["model_ref=base", "judge=hf_local", "judge.model=nope"],
            "judge.model=nope: no such model",
        ),
        (
            ["model_ref=base", "evalset.general.source=path", "evalset.general.path=bad.jsonl"],
            r"bad.jsonl:2: field 'reference' is missing",
        ),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    tmp_path, cache_dir, monkeypatch, overrides, message
):
    (tmp_path / "bad.jsonl").write_text(
        '{"language": "en", "prompt": "Hi?", "reference": "Hello."}\n{"language": "en", "prompt": "Why?"}\n'
    )
    monkeypatch.chdir(tmp_path)
    cfg = eval_cfg(tmp_path, *overrides)
    with pytest.raises(MixmergeError, match=message):
        evaluate(cfg)
    assert not (Path(cfg.paths.output_dir) / "eval_results.json").exists()


@pytest.mark.parametrize("group", ["judge", "evalset", "logger"])
def test_every_evaluate_option_composes_and_instantiates(tmp_path, cache_dir, group):
    tiny = ensure_tiny_random(
        tmp_path / "judge-model", OmegaConf.load(CONF / "model" / "tiny_random.yaml").architecture
    )
    for option in sorted(
        p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_")
    ):
        extra = {
            "hf_local": [f"judge.model={tiny}"],
            "recorded": [f"judge.path={SECOND_READER}"],
        }.get(option, [])
        cfg = compose_config("evaluate", ["model_ref=base", f"{group}={option}", *extra], tmp_path)
        resolved_config(cfg)  # every interpolation resolves
        # judges load models and reach endpoints lazily
        assert isinstance(instantiate(cfg.judge), Judge)
        for node in (cfg.get("logger") or {}).values():
            instantiate(node)
        assert cfg.evalset.redteam.source in ("bundled", "path", "hub")


def test_skip_existing_returns_the_finished_results_without_generating(tmp_path, cache_dir, capsys):
    first = evaluate(eval_cfg(tmp_path, "model_ref=base", "languages=en"))
    again = eval_cfg(tmp_path / "again", "model_ref=base", "languages=en", "skip_existing=true")
    assert evaluate(again) == json.loads(json.dumps(first, default=str))
    assert "skipping (skip_existing=true)" in capsys.readouterr().out
    # Another decoding or other prompts: the finished numbers describe other responses, so the
    # model is evaluated again, not skipped.
    previous = first["generation"]["model_fingerprint"]
    for n, change in enumerate(("generation.dry_multiplier=0", "max_prompts_per_language=2")):
        redo = eval_cfg(
            tmp_path / f"redo{n}", "model_ref=base", "languages=en", "skip_existing=true", change
        )
        out = evaluate(redo)
        assert "generated from other prompts, decoding or weights" in capsys.readouterr().out
        assert out["generation"]["model_fingerprint"] != previous
        previous = out["generation"]["model_fingerprint"]
    # Results judged by another judge are not this judge's: evaluated again, which here reaches
    # the unconfigured endpoint's pre-flight check instead of returning the lexicon's verdicts.
    other = eval_cfg(
        tmp_path / "other", "model_ref=base", "languages=en", "skip_existing=true",
        "judge=openai_compatible", "judge.base_url=http://127.0.0.1:9/v1",
    )  # fmt: skip
    with pytest.raises(MixmergeError):
        evaluate(other)
