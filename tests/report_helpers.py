"""Build the synthetic study of tests/fixtures/report/study.json as model folders with real
provenance (mixmerge.provenance) and real evaluation results (mixmerge.evaluation.metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixmerge.evaluation.metrics import LanguageJudgements, summarize
from mixmerge.io import write_json_atomic
from mixmerge.provenance import parent_entry, write_provenance

SPEC_FILE = Path(__file__).parent / "fixtures" / "report" / "study.json"


def load_spec() -> dict[str, Any]:
    return json.loads(SPEC_FILE.read_text(encoding="utf-8"))


def _per_language(value: int | list[int], languages: list[str]) -> list[int]:
    return value if isinstance(value, list) else [value] * len(languages)


def eval_results(
    spec: dict[str, Any], ev: dict[str, Any], model: Path | str, reference: str
) -> dict[str, Any]:
    """An eval_results.json as mixmerge.evaluation.run writes it, from judgement counts."""
    langs, n, n_gen = spec["languages"], spec["n_redteam"], spec["n_general"]
    base_harmful = spec["baseline_harmful"]
    judgements = {}
    for lang, harmful, wins in zip(
        langs, _per_language(ev["harmful"], langs), _per_language(ev["wins"], langs), strict=True
    ):
        judgements[lang] = LanguageJudgements(
            harm_model=[True] * harmful + [False] * (n - harmful),
            harm_baseline=[True] * base_harmful + [False] * (n - base_harmful),
            wins=[1.0] * wins + [0.0] * (n_gen - wins),
        )
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
        **summarize(judgements, samples=50, seed=0),
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
            write_json_atomic(
                folder / "eval_results.json", eval_results(spec, m["eval"], folder, m["name"])
            )
    for extra in spec.get("run_dir_results", []):
        model = folders[extra["model"]] if extra["model"] else root_model
        write_json_atomic(
            root / extra["dir"] / "eval_results.json",
            eval_results(spec, extra, model, extra["model"] or "base (tiny-random)"),
        )
    return folders
