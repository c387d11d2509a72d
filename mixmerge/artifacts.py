"""The files mixmerge's stages hand each other, defined once.

- `mixmerge.json` (PROVENANCE_FILE) in every trained or merged model folder: `Provenance`;
- `mixture.json` (MIXTURE_FILE) in a training run's directory, and `mixture` of a trained model's
  provenance: `MixtureManifest`;
- `eval_results.json` (RESULTS_FILE) beside an evaluated model and in its run directory:
  `EvalResults` (the per-item verdicts go to JUDGEMENTS_FILE, read by evaluation/paired.py);
- the search's outputs: `SearchCandidate` and `FrontResult` (kept with the Optuna study),
  `ParetoRow` (pareto.csv, pareto.md), `SearchSummary` (SEARCH_FILE in the search's run directory,
  what `mixmerge.report` reads to show a search beside the grid).

Writers build the model and write it (`write_artifact`); readers go through `read_artifact`, so a
file of a wrong or older shape is one line naming the file and what was expected. The models are
lenient where users' older output folders must still load (extra keys are kept, optional keys may
be absent) and strict on what a reader needs (`kind`, the model evaluated, the rates).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mixmerge.errors import MixmergeError
from mixmerge.io import write_json_atomic

PROVENANCE_FILE = "mixmerge.json"
RESULTS_FILE = "eval_results.json"
JUDGEMENTS_FILE = "judgements.jsonl"  # per-item verdicts, beside RESULTS_FILE
MIXTURE_FILE = "mixture.json"
# Beside a searched model, eval_results.json is its report-split result (what `mixmerge.report`
# reads); the dev-split result the search optimised is kept under this name.
DEV_RESULTS_FILE = "eval_results_dev.json"
SEARCH_FILE = "search.json"  # a finished search's summary, in its run directory

# The safety weight: one number in [0, 1], or a per-layer gradient of them (merging/weights.py).
Weight = float | list[float]
Number = float | int


@dataclass
class ModelRef:
    """How a model was named (`reference`), where it lives (`path`), the config key that named it
    (merge recipes), and for an evaluation baseline how it was chosen and the chain followed."""

    reference: str
    path: str
    how: str = "given"  # given | base | self | provenance
    lineage: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def as_dict(self) -> dict[str, Any]:
        """As `eval_results.json` records the model and its baseline."""
        return {
            "reference": self.reference,
            "path": self.path,
            "how": self.how,
            "lineage": self.lineage,
        }


class _Artifact(BaseModel):
    # Extra keys are kept: older and newer files carry fields a reader does not need.
    model_config = ConfigDict(extra="allow")


class MixtureManifest(_Artifact):
    """What a training mixture holds: examples per language and kind, the realised safety share."""

    name: str | None = None
    objective: str | None = None
    safety_ratio: Number | None = None
    convention: str | None = None
    seed: int | None = None
    languages: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    total: int | None = None
    realised_safety_fraction: Number | None = None


class ParentEntry(_Artifact):
    """A model a trained or merged model was made from: its name, its folder, its provenance."""

    reference: str | None = None
    path: str | None = None
    provenance: Provenance | None = None


class RecipeModel(_Artifact):
    key: str | None = None
    reference: str | None = None
    path: str | None = None
    weight: Weight | None = None


class RecipeRecord(_Artifact):
    name: str | None = None
    models: list[RecipeModel] = []


class Provenance(_Artifact):
    """`mixmerge.json`: where a trained (`kind: train`) or merged (`kind: merge`) model came from."""

    kind: Literal["train", "merge"]
    name: str | None = None
    mixmerge_version: str | None = None
    created: str | None = None
    config: dict[str, Any] | None = None
    run_dir: str | None = None
    # trained models
    objective: str | None = None
    parent: ParentEntry | None = None
    base_model: str | None = None
    mixture: MixtureManifest | None = None
    metrics: dict[str, Any] | None = None
    # merged models
    method: str | None = None
    recipe: RecipeRecord | None = None
    safety_weight: Weight | None = None
    parents: list[ParentEntry] | None = None
    base: ParentEntry | None = None
    parameters: dict[str, Any] | None = None

    def parent_records(self) -> list[ParentEntry]:
        """The models this one was made from: a merge's parents, a trained model's parent."""
        if self.kind == "merge":
            return list(self.parents or [])
        return [self.parent] if self.parent else []

    def origin(self) -> ParentEntry | None:
        """The one model this descends from when walking up to a baseline: a trained model's
        parent; for a merge its `base`, or else the first of its parents."""
        if self.kind == "merge":
            return self.base or next(iter(self.parents or []), None)
        return self.parent

    def as_dict(self) -> dict[str, Any]:
        """The file's content as plain data (what was in it, nothing added)."""
        return self.model_dump(mode="json", exclude_unset=True)


class ModelRecord(_Artifact):
    reference: str | None = None
    path: str
    how: str | None = None
    lineage: list[str] = []


class Rates(_Artifact):
    """The rates the report and the search read, per language and averaged (null: not judged)."""

    harm_change_pct: Number | None
    win_rate_pct: Number | None


class EvalResults(_Artifact):
    """`eval_results.json`: one evaluation of a model against its baseline."""

    mixmerge_version: str | None = None
    created: str | None = None
    model: ModelRecord
    baseline: ModelRecord | None = None
    judge: dict[str, Any] | None = None
    average: Rates
    languages: dict[str, Rates]
    totals: dict[str, Any] | None = None
    run_dir: str | None = None

    @property
    def judge_name(self) -> str | None:
        name = (self.judge or {}).get("name")
        return None if name is None else str(name)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class SearchCandidate(_Artifact):
    """One merge the search tried (kept with the Optuna trial as `candidate`)."""

    method: str
    safety_weight: Weight | None = None
    params: dict[str, Any] = {}


class FrontResult(_Artifact):
    """A front model's result on the report split (kept with the study as `report:<trial>`)."""

    harm: float
    win: float
    results: str


class ParetoRow(_Artifact):
    """One row of pareto.csv / pareto.md."""

    trial: int
    method: str
    safety_weight: str
    parameters: str
    dev_harm: float
    dev_win: float
    report_harm: float | None
    report_win: float | None
    model: str


class FrontEntry(ParetoRow):
    """A front trial in search.json: its pareto.csv row, the merge it tried, and where its
    report-split evaluation (eval_results.json and judgements.jsonl) is."""

    candidate: SearchCandidate
    report_results: str | None = None


class SearchSummary(_Artifact):
    """`search.json`: a finished search, as the report needs it."""

    study_name: str
    run_dir: str
    recipe: str
    parents: list[RecipeModel] = []  # the recipe's models, resolved (objective: general, safety)
    harm_metric: str
    win_metric: str
    dev_split: str
    report_split: str
    sampler: str
    budget: int
    finished: int
    front: list[FrontEntry]


A = TypeVar("A", bound=BaseModel)


# pydantic adds the member of a union it tried to a location ('weight.float', 'x.list[float]'):
# the user's file has no such key.
_UNION_MEMBER = re.compile(r"^(float|int|str|bool|none|list\[.*\]|dict\[.*\]|[a-z-]+\[.*\])$")


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and _UNION_MEMBER.match(p)))


def _why(err: ValidationError) -> str:
    """The first problem pydantic found, in the project's words."""
    first = err.errors()[0]
    where = _location(first["loc"])
    if first["type"] == "missing":
        return f"'{where}' is missing"
    expected = first["msg"].replace("Input should be ", "expected ").replace("Input ", "")
    if not where:
        return "expected a JSON object" if first["type"] == "model_type" else expected
    return f"'{where}' is {first['input']!r}, {expected}"


def validate(model: type[A], data: Any, path: str | Path, what: str | None = None) -> A:
    """`data` as `model`, or one line naming the file and what was expected."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise MixmergeError(f"{path}: malformed {what or Path(path).name}: {_why(err)}") from None


def read_json(path: str | Path, what: str | None = None) -> Any:
    """Parsed JSON from `path`; unreadable or malformed JSON is one line naming the file."""
    what = what or Path(path).name
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise MixmergeError(f"{path}: cannot read {what} ({err})") from err
    except json.JSONDecodeError as err:
        raise MixmergeError(f"{path}: malformed {what}: {err.msg} at line {err.lineno}") from err


def read_artifact(model: type[A], path: str | Path) -> A:
    """Read and check one artifact file."""
    return validate(model, read_json(path), path)


def write_artifact(path: str | Path, artifact: BaseModel) -> Path:
    """Write an artifact atomically, with exactly the fields it was given (python mode: values
    JSON cannot hold are written as text, as write_json_atomic does)."""
    return write_json_atomic(path, artifact.model_dump(exclude_unset=True))


def load_provenance(model_dir: str | Path) -> Provenance | None:
    """The provenance of a model folder, or None for a model mixmerge did not make."""
    path = Path(model_dir) / PROVENANCE_FILE
    return read_artifact(Provenance, path) if path.is_file() else None
