"""The bad-input campaign (issue 17, item 3): every entry point is fed wrong types, out-of-range
and empty values for its user-facing keys, and truncated, empty, wrongly-encoded and
wrongly-shaped files for its file inputs. Each case must end with exactly one
`mixmerge: error:` line on stderr, exit code 2, and no new finished output (no model folder under
the models dir, no eval_results.json, no report).

The entry functions run in process, wrapped exactly as their CLIs wrap them (`report_errors`), on
configs composed as the CLIs compose them (`compose_config`): the whole campaign takes seconds, not
a subprocess per case. Hydra's own config-schema errors (an unknown group option or key) are a
separate, documented class: Hydra prints them and exits 1; the few cases below run the real CLI.

The number of cases is printed by `test_campaign_size` and recorded in docs/errors.md.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mixmerge.config import compose_config
from mixmerge.errors import EXIT_CODE, report_errors
from tests.helpers import run_cli
from tests.merge_helpers import make_base, make_finetuned

# --- what the files are -------------------------------------------------------------------------

SFT_ROW = {"language": "en", "prompt": "Say hi.", "chosen": "Hi!"}
REDTEAM_ROW = {"language": "en", "prompt": "Say hi.", "category": "x", "id": "1"}
GENERAL_ROW = {**REDTEAM_ROW, "reference": "Hi!"}


def jsonl(*rows: Any) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def truncated(row: dict[str, Any]) -> bytes:
    """One good line, then a line cut off mid-way (a copy interrupted)."""
    whole = jsonl(row, row)
    return whole[: len(whole) - 12]


# Bad variants of a JSONL file whose good rows look like `row`: (id, file name, bytes).
def bad_files(row: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    text = json.dumps(row, ensure_ascii=False)
    return [
        ("truncated", "bad.jsonl", truncated(row)),
        ("empty", "bad.jsonl", b""),
        ("blank-lines", "bad.jsonl", b"\n\n  \n"),
        (
            "latin1",
            "bad.jsonl",
            jsonl({**row, "prompt": "Dîtes bonjour."}).decode().encode("latin-1"),
        ),
        ("binary", "bad.jsonl", bytes(range(256)) * 8),
        ("utf16", "bad.jsonl", text.encode("utf-16")),
        ("array-line", "bad.jsonl", b"[" + text.encode() + b"]\n"),
        ("scalar-line", "bad.jsonl", b"42\n"),
        ("missing-field", "bad.jsonl", jsonl({k: v for k, v in row.items() if k != "prompt"})),
        ("wrong-type-field", "bad.jsonl", jsonl({**row, "prompt": 3})),
        ("empty-field", "bad.jsonl", jsonl({**row, "prompt": ""})),
        ("unknown-language", "bad.jsonl", jsonl({**row, "language": "xx"})),
        ("json-object-not-rows", "bad.json", text.encode()[:-1]),
        ("csv-empty", "bad.csv", b""),
        ("csv-wrong-columns", "bad.csv", b"a,b\n1,2\n"),
        ("parquet-garbage", "bad.parquet", b"PAR1 not really parquet"),
        ("wrong-suffix", "bad.txt", jsonl(row)),
        ("missing", "nope.jsonl", b""),  # the file is not created
        ("folder-not-dataset", "somedir", b""),  # an empty folder
    ]


# --- the table ----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    command: str  # train | merge | evaluate | study
    overrides: list[str]
    files: dict[str, bytes | None] = field(default_factory=dict)  # None: a folder
    expect: str = ""  # a fragment the one error line must contain

    @property
    def param(self) -> Any:
        return pytest.param(self, id=f"{self.command}:{self.id}")


TRAIN = [
    "model=tiny_random",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.precision=32-true",
    "trainer.max_steps=1",
    "languages=en",
    "data.max_examples_per_language=8",
    "data.max_length=128",
    "probe_batches=1",
]
MERGE = ["recipe.general=general", "recipe.safety=safety"]
EVALUATE = [
    "model=tiny_random",
    "model_ref=base",
    "languages=en",
    "max_prompts_per_language=2",
    "generation.max_new_tokens=4",
    "bootstrap.samples=10",
]

# (key, wrong type, out of range, empty) for the user-facing keys; None: no such variant
TRAIN_KEYS: list[tuple[str, Any, Any, Any]] = [
    ("data.safety_ratio", "lots", 1.5, "''"),
    ("data.safety_ratio", None, -0.1, "null"),
    ("data.max_length", "long", 4, "null"),
    ("data.batch_size", "big", 0, "null"),
    ("data.max_examples_per_language", "many", -1, "''"),
    ("data.on_insufficient_safety", 3, "maybe", "''"),
    ("data.num_workers", "two", -1, "null"),
    ("languages.codes", "en", "[en,xx]", "[]"),
    ("seed", "abc", -1, "null"),
    ("trainer.max_steps", "ten", -5, "null"),
    ("trainer.precision", 3, "17-true", "''"),
    ("trainer.accumulate_grad_batches", "x", 0, "null"),
    ("trainer.gradient_clip_val", "x", -1, "''"),
    ("probe_batches", "x", -1, "null"),
    ("objective.optimizer.lr", "fast", -1.0, "null"),
    ("output_name", "[a,b]", "../up", "''"),
    ("ckpt_path", 3, "/no/such.ckpt", "''"),
    ("model.init_from", 3, "/no/such/model", "''"),
    ("data.general.source", 3, "ftp", "''"),
    ("peft.config.r", None, None, None),
]
DPO_KEYS: list[tuple[str, Any, Any, Any]] = [
    ("objective.beta", "x", -0.1, "null"),
    ("objective.loss_type", 3, "nope", "''"),
    ("objective.label_smoothing", "x", 0.7, "null"),
]
MERGE_KEYS: list[tuple[str, Any, Any, Any]] = [
    ("merge.safety_weight", "half", 1.5, "null"),
    ("merge.safety_weight", "[a,b]", -0.5, "[]"),
    ("merge.dtype", 3, "float13", "''"),
    ("merge.out_dtype", 3, "int3", "''"),
    ("merge.tokenizer_source", 3, "/no/such", "''"),
    ("recipe.general", "[a]", "/no/such/model", "''"),
    ("recipe.safety", "[a]", "../../x", "null"),
    ("recipe.base", "[a]", "/no/base", "''"),
    ("output_name", "[a,b]", "../../escaped", "''"),
    ("seed", "abc", -1, "null"),
    ("+mergekit_options.nonsense", None, 1, None),
]
TIES_KEYS: list[tuple[str, Any, Any, Any]] = [
    ("merge.density", "dense", 1.5, "null"),
    ("merge.density", "[a]", 0, "''"),
]
EVAL_KEYS: list[tuple[str, Any, Any, Any]] = [
    ("model_ref", "[a]", "/no/such/model", "''"),
    ("baseline", "[a]", "../../nowhere", "''"),
    ("max_prompts_per_language", "many", 0, "''"),
    ("bootstrap.samples", "x", -5, "null"),
    ("generation.max_new_tokens", "x", 0, "null"),
    ("generation.batch_size", "x", 0, "null"),
    ("generation.temperature", "x", -1.0, "null"),
    ("generation.top_p", "x", 1.5, "null"),
    ("generation.dtype", 3, "float13", "''"),
    ("generation.do_sample", "maybe", None, "null"),
    ("languages.codes", "en", "[xx]", "[]"),
    ("seed", "abc", None, "null"),
    ("generation.decoder", 3, "beam", "''"),
    ("judge.harm_threshold", "x", 1.5, None),  # null is valid: the threshold chosen on dev
    ("fluency_threshold", "x", 1.5, "null"),
    ("evalset.general.source", 3, "ftp", "''"),
]


def key_cases(command: str, base: list[str], keys: list[tuple[str, Any, Any, Any]]) -> list[Case]:
    cases = []
    for key, wrong, out_of_range, empty in keys:
        for kind, value in (("type", wrong), ("range", out_of_range), ("empty", empty)):
            if value is not None:
                cases.append(Case(f"{key}={value} ({kind})", command, [*base, f"{key}={value}"]))
    return cases


def file_cases(
    command: str, base: list[str], key: str, row: dict[str, Any], extra: list[str]
) -> list[Case]:
    cases = []
    for id_, name, content in bad_files(row):
        files: dict[str, bytes | None] = {}
        if id_ == "folder-not-dataset":
            files[name] = None
        elif id_ != "missing":
            files[name] = content
        cases.append(
            Case(
                f"{key} {id_}",
                command,
                [*base, *extra, f"{key}.source=path", f"{key}.path={{root}}/{name}"],
                files,
            )
        )
    return cases


def checkpoint_cases() -> list[Case]:
    contents = {
        "empty": b"",
        "truncated-zip": b"PK\x03\x04" + bytes(100),
        "latin1": "checkpoint é".encode("latin-1"),
        "binary": bytes(range(256)) * 4,
        "text": b"not a checkpoint\n",
    }
    cases = [
        Case(
            f"ckpt_path {k}",
            "train",
            [*TRAIN, "ckpt_path='{root}/step=1.ckpt'"],
            {"step=1.ckpt": v},
            "not a readable checkpoint",
        )
        for k, v in contents.items()
    ]
    cases.append(
        Case(
            "ckpt_path folder", "train", [*TRAIN, "ckpt_path={root}/ck"], {"ck": None}, "ckpt_path"
        )
    )
    return cases


# Model-folder corruptions, applied to a copy of a tiny model named `bad` under the models dir.
def model_cases() -> list[Case]:
    corrupt = {
        "weights-truncated": "model.safetensors:truncate",
        "weights-empty": "model.safetensors:empty",
        "weights-latin1": "model.safetensors:latin1",
        "config-empty": "config.json:empty",
        "config-truncated": "config.json:truncate",
        "config-latin1": "config.json:latin1",
        "config-array": "config.json:array",
        "config-missing": "config.json:delete",
        "tokenizer-truncated": "tokenizer.json:truncate",
        "tokenizer-binary": "tokenizer.json:binary",
        "tokenizer-config-empty": "tokenizer_config.json:empty",
    }
    cases = []
    for id_, how in corrupt.items():
        cases.append(
            Case(
                f"model.init_from {id_}",
                "train",
                [*TRAIN, "model.init_from=bad"],
                {"@model": how.encode()},
            )
        )
        cases.append(
            Case(
                f"recipe.safety {id_}",
                "merge",
                [*MERGE[:1], "recipe.safety=bad"],
                {"@model": how.encode()},
            )
        )
        cases.append(
            Case(
                f"model_ref {id_}",
                "evaluate",
                [*EVALUATE, "model_ref=bad", "baseline=base"],
                {"@model": how.encode()},
            )
        )
    return cases


def study_cases() -> list[Case]:
    base = ["experiment=mini_objective_merge"]
    return [
        Case("study.name=../x", "study", [*base, "study.name=../x"]),
        Case("study.name=''", "study", [*base, "study.name=''"]),
        Case("stage command", "study", [*base, "study.stages.sft.command=deploy"]),
        Case("models_from unknown", "study", [*base, "study.stages.evaluate.models_from=[nope]"]),
        Case("settings wrong key", "study", [*base, "study.settings.train=['nonsense_key=1']"]),
        Case("settings output_name", "study", [*base, "study.settings.merge=['output_name=../x']"]),
    ]


SHARED = {*TRAIN, *MERGE, *EVALUATE}

CASES = [
    *key_cases("train", TRAIN, TRAIN_KEYS),
    *key_cases("train", [*TRAIN, "objective=dpo"], DPO_KEYS),
    *key_cases("merge", MERGE, MERGE_KEYS),
    *key_cases("merge", [*MERGE, "merge=ties"], TIES_KEYS),
    *key_cases("evaluate", EVALUATE, EVAL_KEYS),
    # The lexicon judge's own key (the default offline judge is the learned one).
    *key_cases("evaluate", [*EVALUATE, "judge=lexicon"], [("judge.tie_margin", "x", -1, "null")]),
    *file_cases("train", TRAIN, "data.general", SFT_ROW, ["data=mix_0pct_safety"]),
    *file_cases("train", TRAIN, "data.safety", SFT_ROW, ["data=mix_100pct_safety"]),
    *file_cases("evaluate", EVALUATE, "evalset.general", GENERAL_ROW, []),
    *file_cases("evaluate", EVALUATE, "evalset.redteam", REDTEAM_ROW, []),
    *checkpoint_cases(),
    *model_cases(),
    *study_cases(),
]


# --- running one case ---------------------------------------------------------------------------


def entry(command: str) -> Callable[[Any], Any]:
    if command == "train":
        from mixmerge.training.pipeline import train

        return train
    if command == "merge":
        from mixmerge.merging.pipeline import merge

        return merge
    if command == "evaluate":
        from mixmerge.evaluation.run import evaluate

        return evaluate
    from mixmerge.study.run import run_study

    return run_study


def corrupt_model(src: Path, dest: Path, how: str) -> None:
    import shutil

    shutil.copytree(src, dest)
    name, action = how.split(":")
    file = dest / name
    data = file.read_bytes()
    new = {
        "truncate": data[: len(data) // 2],
        "empty": b"",
        "latin1": '{"é": "à"}'.encode("latin-1")
        if name.endswith(".json")
        else "é".encode("latin-1") * 64,
        "array": b"[]",
        "binary": bytes(range(256)),
    }
    if action == "delete":
        file.unlink()
    else:
        file.write_bytes(new[action])


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A base and two fine-tunes of it under one models folder (the merge cases' parents)."""
    root = tmp_path_factory.mktemp("campaign-family")
    base = make_base(root / "base-src")
    models = root / "models"
    make_finetuned(base, models / "general", seed=1)
    make_finetuned(base, models / "safety", seed=2)
    return root


def finished_outputs(*roots: Path) -> set[Path]:
    """Everything that looks finished: model folders (mixmerge.json), results, reports."""
    names = ("mixmerge.json", "eval_results.json", "report.md", "model.safetensors")
    found: set[Path] = set()
    for root in roots:
        if root.exists():
            found |= {p for n in names for p in root.rglob(n)}
    return found


def prepare(case: Case, tmp_path: Path, family: Path, monkeypatch: Any) -> list[str]:
    """Write the case's files (and link the merge parents) under `tmp_path`; its overrides."""
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    for name, content in case.files.items():
        if name == "@model":
            src = family / "models" / ("safety" if case.command == "merge" else "general")
            corrupt_model(src, models / "bad", content.decode())
        elif content is None:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(content)
    if case.command == "merge":
        for name in ("general", "safety"):
            (models / name).symlink_to(family / "models" / name)
    return [o.replace("{root}", str(tmp_path)) for o in case.overrides]


def run_case(
    case: Case, overrides: list[str], tmp_path: Path, capsys: Any
) -> tuple[int, list[str], str]:
    """Run one case in process as its CLI would; returns (exit code, error lines, stderr)."""
    capsys.readouterr()
    if case.command == "study":
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from omegaconf import open_dict

        from mixmerge.study.plan import plan_study
        from tests.helpers import CONF

        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="study", overrides=overrides)
            with open_dict(cfg):
                cfg.paths = {"root_dir": str(tmp_path), "output_dir": str(tmp_path / "run"),
                             "models_dir": str(tmp_path / "models")}  # fmt: skip
            code = _call(lambda: report_errors(plan_study)(cfg.study))
    else:
        cfg = composed(case.command, overrides, tmp_path)
        code = _call(lambda: report_errors(entry(case.command))(cfg))
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("mixmerge: error:")], err


_ABSENT = object()
GROUPS = {"data", "objective", "merge", "recipe", "model", "languages", "judge", "evalset", "peft"}


def composed(command: str, overrides: list[str], root: Path) -> Any:
    """The config `compose_config` would give, faster: the shared part (the base settings and
    group choices) is composed once per combination, and each case's own `key=value` settings
    are applied to a copy through Hydra's override parser, with its values and types."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    shared = tuple(o for o in overrides if o in SHARED or o.split("=", 1)[0] in GROUPS)
    own = [o for o in overrides if o not in shared]
    cfg = copy.deepcopy(_composed(command, shared))
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "run")
        cfg.paths.models_dir = str(root / "models")
    for override in OverridesParser.create().parse_overrides(own):
        if (
            not override.is_add()
            and OmegaConf.select(cfg, override.key_or_group, default=_ABSENT) is _ABSENT
        ):
            raise AssertionError(f"{override.input_line}: a Hydra error, not a campaign case")
        with open_dict(cfg) if override.is_add() else contextlib.nullcontext():
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
    return cfg


@functools.cache
def _composed(command: str, shared: tuple[str, ...]) -> Any:
    return compose_config(command, list(shared), Path("/nonexistent-root"))


def _call(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize("case", [c.param for c in CASES])
def test_bad_input(case: Case, tmp_path, family, cache_dir, capsys, monkeypatch):
    overrides = prepare(case, tmp_path, family, monkeypatch)
    before = finished_outputs(tmp_path, family / "models")
    code, errors, err = run_case(case, overrides, tmp_path, capsys)
    last = next((line for line in reversed(err.splitlines()) if line.strip()), "")
    assert code == EXIT_CODE, f"exit {code}; last stderr line: {last[:300]}\n{err[-3000:]}"
    assert len(errors) == 1, err[-3000:]
    assert case.expect in errors[0], errors[0]
    assert finished_outputs(tmp_path, family / "models") == before


HYDRA_CASES = [
    ("mixmerge.train", ["data=mix_42pct_safety"], "Could not find 'data/mix_42pct_safety'"),
    ("mixmerge.train", ["trainer.no_such_key=1"], "Could not override 'trainer.no_such_key'"),
    ("mixmerge.merge", ["merge=average"], "Could not find 'merge/average'"),
    ("mixmerge.evaluate", ["model_ref=base", "judge=gpt5"], "Could not find 'judge/gpt5'"),
    ("mixmerge.train", ["data.safety_ratio=[unclosed"], "no viable alternative"),
]


@pytest.mark.parametrize(("module", "args", "message"), HYDRA_CASES)
def test_hydra_config_errors_exit_1(tmp_path, module, args, message):
    """Config-schema errors are Hydra's: its own message (a few lines) and exit code 1, before any
    mixmerge code runs, so nothing can be written."""
    result = run_cli(module, *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()


def test_campaign_size():
    """The count docs/errors.md quotes; update both together."""
    total = len(CASES) + len(HYDRA_CASES)
    print(
        f"bad-input campaign: {len(CASES)} mixmerge cases + {len(HYDRA_CASES)} Hydra cases = {total}"
    )
    assert total == 276  # the count docs/errors.md quotes


def test_a_good_input_passes_the_same_harness(tmp_path, family, cache_dir, capsys, monkeypatch):
    """The harness itself can tell success from failure: a sound merge exits 0 and writes a model."""
    case = Case("good", "merge", [*MERGE, "output_name=good"])
    code, errors, err = run_case(
        case, prepare(case, tmp_path, family, monkeypatch), tmp_path, capsys
    )
    assert code == 0 and not errors, err[-2000:]
    assert (tmp_path / "models" / "good" / "mixmerge.json").is_file()
