"""Build the synthetic study of tests/fixtures/report/study.json as model folders with real
provenance (mixmerge.provenance) and real evaluation results (mixmerge.evaluation.metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixmerge.evaluation.generation import write_jsonl_atomic
from mixmerge.evaluation.metrics import LanguageJudgements, summarize
from mixmerge.io import write_json_atomic
from mixmerge.provenance import parent_entry, write_provenance

SPEC_FILE = Path(__file__).parent / "fixtures" / "report" / "study.json"


def load_spec() -> dict[str, Any]:
    return json.loads(SPEC_FILE.read_text(encoding="utf-8"))


def _per_language(value: int | list[int], languages: list[str]) -> list[int]:
    return value if isinstance(value, list) else [value] * len(languages)


def judgements(spec: dict[str, Any], ev: dict[str, Any]) -> dict[str, LanguageJudgements]:
    """Per-language verdicts from judgement counts: the first `harmful` red-team prompts are
    harmful, the first `wins` general prompts won (so any two models are paired prompt by prompt)."""
    langs, n, n_gen = spec["languages"], spec["n_redteam"], spec["n_general"]
    base_harmful = spec["baseline_harmful"]
    out = {}
    for lang, harmful, wins in zip(
        langs, _per_language(ev["harmful"], langs), _per_language(ev["wins"], langs), strict=True
    ):
        out[lang] = LanguageJudgements(
            harm_model=[True] * harmful + [False] * (n - harmful),
            harm_baseline=[True] * base_harmful + [False] * (n - base_harmful),
            wins=[1.0] * wins + [0.0] * (n_gen - wins),
        )
    return out


def judgement_records(spec: dict[str, Any], ev: dict[str, Any]) -> list[dict[str, Any]]:
    """judgements.jsonl records as evaluation writes them (verdict fields only)."""
    records = []
    for lang, j in judgements(spec, ev).items():
        records += [
            {"id": f"{lang}-rt-{i}", "language": lang, "set": "redteam", "harmful": h,
             "baseline_harmful": b}
            for i, (h, b) in enumerate(zip(j.harm_model, j.harm_baseline, strict=True))
        ]  # fmt: skip
        records += [
            {"id": f"{lang}-gen-{i}", "language": lang, "set": "general", "win": w}
            for i, w in enumerate(j.wins)
        ]
    return records


def write_evaluation(
    folder: Path, spec: dict[str, Any], ev: dict[str, Any], model: Path | str, reference: str
) -> None:
    """eval_results.json and judgements.jsonl into `folder`, as evaluation writes them."""
    write_jsonl_atomic(folder / "judgements.jsonl", judgement_records(spec, ev))
    write_json_atomic(folder / "eval_results.json", eval_results(spec, ev, model, reference))


def eval_results(
    spec: dict[str, Any], ev: dict[str, Any], model: Path | str, reference: str
) -> dict[str, Any]:
    """An eval_results.json as mixmerge.evaluation.run writes it, from judgement counts."""
    base = "/cache/models/tiny-random"
    return {
        "mixmerge_version": "0.1.0",
        "created": ev["created"],
        "model": {"reference": reference, "path": str(model), "how": "given", "lineage": []},
        "baseline": {
            "reference": "tiny-random",
            "path": base,
            "how": "provenance",
            "lineage": [str(model), base],
        },
        "judge": {"name": spec["judge"], "config": {"name": spec["judge"]}, "stats": {}},
        "evalset": {"name": "bundled"},
        "generation": {"max_new_tokens": 8, "seed": 42},
        **summarize(judgements(spec, ev), samples=50, seed=0),
        "run_dir": "run",
    }


def build_study(
    root: Path, models_dir: Path, spec: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write every model of the spec under `models_dir` (parents first) and the extra evaluation
    run directories under `root`; returns name → folder."""
    spec = spec or load_spec()
    root_model = "/cache/models/tiny-random"  # the converted base model: no provenance of its own
    folders: dict[str, Path] = {}
    for m in spec["models"]:
        folder = models_dir / m["name"]
        folder.mkdir(parents=True)
        if m["kind"] == "train":
            parent = m.get("parent")
            write_provenance(
                folder,
                "train",
                objective=m["objective"],
                name=m["name"],
                parent=parent_entry(parent, folders[parent])
                if parent
                else parent_entry(spec["base_model"], root_model),
                base_model=spec["base_model"],
                mixture={
                    "name": m["mix"],
                    "objective": m["objective"],
                    "safety_ratio": m["safety_ratio"],
                    "languages": m.get("languages", spec["languages"]),
                },
                metrics={},
                config={"tags": ["train", m["objective"], m["mix"]]},
            )
        else:
            parents = m["parents"]
            write_provenance(
                folder,
                "merge",
                name=m["name"],
                method=m["method"],
                recipe={
                    "name": m["recipe"],
                    "models": [{"reference": p, "path": str(folders[p])} for p in parents],
                },
                safety_weight=m["safety_weight"],
                parameters={"name": m["method"], "safety_weight": m["safety_weight"]},
                parents=[parent_entry(p, folders[p]) for p in parents],
                base=parent_entry(spec["base_model"], root_model),
            )
        folders[m["name"]] = folder
        if "eval" in m:
            write_evaluation(folder, spec, m["eval"], folder, m["name"])
    for extra in spec.get("run_dir_results", []):
        model = folders[extra["model"]] if extra["model"] else root_model
        write_evaluation(
            root / extra["dir"], spec, extra, model, extra["model"] or "base (tiny-random)"
        )
    return folders
