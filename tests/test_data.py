"""Mixtures, sources and chat formatting."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from omegaconf import OmegaConf

from mixmerge import LANGUAGES
from mixmerge.data.formatting import IGNORE_INDEX, encode_example, prompt_text, response_text
from mixmerge.data.mixture import build_mixture, mixture_counts
from mixmerge.data.records import REQUIRED_FIELDS, bundled_file, read_jsonl
from mixmerge.errors import MixmergeError
from mixmerge.modeling import build_byte_tokenizer


def write_pool(path: Path, kind: str, sizes: dict[str, int]) -> Path:
    rows = []
    for lang, n in sizes.items():
        for i in range(n):
            rows.append(
                {
                    "id": f"{lang}-{kind}-{i}",
                    "language": lang,
                    "prompt": f"{kind} prompt {lang} {i}",
                    "chosen": f"good answer {i}",
                    "rejected": f"bad answer {i}",
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def data_cfg(
    tmp_path: Path, ratio: float, general: dict[str, int], safety: dict[str, int], **extra
):
    g = write_pool(tmp_path / "general.jsonl", "general", general)
    s = write_pool(tmp_path / "safety.jsonl", "safety", safety)
    base = OmegaConf.load(Path(__file__).parents[1] / "conf/data/_default.yaml")
    cfg = OmegaConf.merge(
        base,
        {
            "name": "test",
            "safety_ratio": ratio,
            "general": {"source": "path", "path": str(g)},
            "safety": {"source": "path", "path": str(s)},
            **extra,
        },
    )
    return cfg


@pytest.mark.parametrize(
    ("ratio", "expected"),
    # 80 general and 40 safety per language: safety = round(r/(1-r) * 80), unless that exceeds 40.
    [(0.0, (80, 0)), (0.15, (80, 14)), (0.3, (80, 34)), (1.0, (0, 40)), (0.5, (40, 40))],
)
def test_mixture_counts_are_exact_per_language(tmp_path, ratio, expected):
    sizes = dict.fromkeys(LANGUAGES, 80)
    mixture = build_mixture(
        data_cfg(tmp_path, ratio, sizes, dict.fromkeys(LANGUAGES, 40)),
        list(LANGUAGES),
        "sft",
        seed=1,
    )
    for lang in LANGUAGES:
        assert (
            mixture.manifest["counts"][lang]["general"],
            mixture.manifest["counts"][lang]["safety"],
        ) == expected
        got = [r for r in mixture.records if r["language"] == lang]
        assert sum(r["kind"] == "safety" for r in got) == expected[1]
        assert sum(r["kind"] == "general" for r in got) == expected[0]
    total = 6 * sum(expected)
    assert mixture.manifest["total"] == total == len(mixture.records)
    assert mixture.manifest["realised_safety_fraction"] == pytest.approx(
        expected[1] / sum(expected)
    )


def test_mixture_is_deterministic_by_seed_and_language_filtered(tmp_path):
    cfg = data_cfg(tmp_path, 0.3, dict.fromkeys(LANGUAGES, 30), dict.fromkeys(LANGUAGES, 30))
    a = build_mixture(cfg, ["en", "fr"], "sft", seed=3).records
    b = build_mixture(cfg, ["en", "fr"], "sft", seed=3).records
    c = build_mixture(cfg, ["en", "fr"], "sft", seed=4).records
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert [r["id"] for r in a] != [r["id"] for r in c]
    assert {r["language"] for r in a} == {"en", "fr"}


def test_insufficient_safety_policies():
    assert mixture_counts(80, 10, 0.5, "downsample_general", None, "en") == (10, 10)
    assert mixture_counts(80, 10, 0.5, "repeat_safety", None, "en") == (80, 80)
    with pytest.raises(MixmergeError, match="needs 80 safety examples but has 10"):
        mixture_counts(80, 10, 0.5, "error", None, "en")
    assert mixture_counts(80, 40, 0.15, "error", 20, "en") == (17, 3)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"safety_ratio": 1.5}, r"data.safety_ratio=1.5: expected a number in \[0, 1\]"),
        ({"safety_ratio": -0.1}, r"data.safety_ratio=-0.1"),
        ({"on_insufficient_safety": "pad"}, "data.on_insufficient_safety=pad"),
    ],
)
def test_bad_mixture_config(tmp_path, override, message):
    cfg = data_cfg(tmp_path, 0.15, {"en": 5}, {"en": 5})
    cfg = OmegaConf.merge(cfg, override)
    with pytest.raises(MixmergeError, match=message):
        build_mixture(cfg, ["en"], "sft", seed=0)


def test_unknown_language(tmp_path):
    cfg = data_cfg(tmp_path, 0.15, {"en": 5}, {"en": 5})
    with pytest.raises(MixmergeError, match="languages.codes: unknown language 'de'"):
        build_mixture(cfg, ["en", "de"], "sft", seed=0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"language": "en", "prompt": "p", "rejected": "r"}',
            r"bad.jsonl:2: field 'chosen' is missing",
        ),
        (
            '{"language": "en", "prompt": "p", "chosen": 3}',
            r"bad.jsonl:2: field 'chosen' must be a string, got int",
        ),
        (
            '{"language": "en", "prompt": "  ", "chosen": "c"}',
            r"bad.jsonl:2: field 'prompt' is empty",
        ),
        (
            '{"language": "xx", "prompt": "p", "chosen": "c"}',
            r"bad.jsonl:2: language 'xx' is not one of",
        ),
        ('{"language": "en", "prompt": "p", "chosen": "c"', r"bad.jsonl:2: not valid JSON"),
        ('["en", "p", "c"]', r"bad.jsonl:2: expected a JSON object"),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"language": "en", "prompt": "ok", "chosen": "fine"}\n' + line + "\n", encoding="utf-8"
    )
    with pytest.raises(MixmergeError, match=message):
        read_jsonl(path, REQUIRED_FIELDS["sft"])


def test_missing_data_file(tmp_path):
    cfg = data_cfg(tmp_path, 0.15, {"en": 5}, {"en": 5})
    cfg.general.path = str(tmp_path / "nope.jsonl")
    with pytest.raises(
        MixmergeError, match=r"data.general.path=.*nope.jsonl: no such file or folder"
    ):
        build_mixture(cfg, ["en"], "sft", seed=0)


def test_hub_schema_dataset_with_column_mapping(tmp_path):
    """A local dataset saved in UltraFeedback-binarized's schema, read through the hub code path."""
    chat = lambda p, a: [{"role": "user", "content": p}, {"role": "assistant", "content": a}]  # noqa: E731
    table = datasets.Dataset.from_dict(
        {
            "prompt": ["What is 2+2?", "Name a colour.", "Capitale de la France ?"],
            "chosen": [
                chat("What is 2+2?", "4"),
                chat("Name a colour.", "Blue"),
                chat("Capitale de la France ?", "Paris"),
            ],
            "rejected": [
                chat("What is 2+2?", "5"),
                chat("Name a colour.", "Table"),
                chat("Capitale de la France ?", "Lyon"),
            ],
            "lang": ["English", "English", "French"],
        }
    )
    saved = tmp_path / "ultrafeedback_like"
    datasets.DatasetDict({"train_prefs": table}).save_to_disk(str(saved))
    base = OmegaConf.load(Path(__file__).parents[1] / "conf/data/_default.yaml")
    cfg = OmegaConf.merge(
        base,
        {
            "name": "hub",
            "safety_ratio": 0.0,
            "general": {
                "source": "hub",
                "path": str(saved),
                "split": "train_prefs",
                "columns": {"language": "lang"},
                "language_names": {"English": "en", "French": "fr"},
            },
        },
    )
    mixture = build_mixture(cfg, ["en", "fr"], "dpo", seed=0)
    by_prompt = {r["prompt"]: r for r in mixture.records}
    assert (
        by_prompt["What is 2+2?"]["chosen"] == "4" and by_prompt["What is 2+2?"]["rejected"] == "5"
    )
    assert by_prompt["Capitale de la France ?"]["language"] == "fr"
    assert mixture.manifest["counts"] == {
        "en": {"general": 2, "safety": 0},
        "fr": {"general": 1, "safety": 0},
    }

    cfg.general.columns = {"prompt": "question"}
    with pytest.raises(
        MixmergeError, match="data.general.columns.prompt: column 'question' not in dataset"
    ):
        build_mixture(cfg, ["en"], "dpo", seed=0)


def test_no_prompt_token_carries_loss():
    tokenizer = build_byte_tokenizer()
    record = {
        "prompt": "Quelle est la capitale du Japon ?",
        "chosen": "Tokyo est la capitale.",
        "rejected": "x",
    }
    enc = encode_example(tokenizer, record, "sft", max_length=512)
    n_prompt = len(
        tokenizer(prompt_text(tokenizer, record["prompt"]), add_special_tokens=False)["input_ids"]
    )
    assert enc["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    trained = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert len(trained) == len(enc["input_ids"]) - n_prompt
    assert tokenizer.decode(trained) == response_text(tokenizer, record["prompt"], record["chosen"])
    assert "Tokyo" in tokenizer.decode(trained) and "Japon" not in tokenizer.decode(trained)


def test_long_examples_are_truncated_or_dropped():
    tokenizer = build_byte_tokenizer()
    long = {"prompt": "short", "chosen": "word " * 500}
    enc = encode_example(tokenizer, long, "sft", max_length=64)
    assert len(enc["input_ids"]) == 64
    assert (
        encode_example(tokenizer, {"prompt": "p" * 200, "chosen": "c"}, "sft", max_length=64)
        is None
    )


@pytest.mark.parametrize("lang", LANGUAGES)
def test_bundled_corpus_is_valid(lang):
    general = read_jsonl(bundled_file("general", lang), REQUIRED_FIELDS["dpo"], pair=True)
    safety = read_jsonl(bundled_file("safety", lang), REQUIRED_FIELDS["dpo"], pair=True)
    assert len(general) >= 80 and len(safety) >= 40
    assert all(r["language"] == lang for r in general + safety)
    assert len({r["task"] for r in general}) >= 6
    assert len({r["category"] for r in safety}) >= 5


@pytest.mark.parametrize("lang", LANGUAGES)
def test_bundled_instruction_set_is_valid_and_new(lang):
    instruct = read_jsonl(bundled_file("instruct", lang), REQUIRED_FIELDS["sft"], pair=False)
    general = read_jsonl(bundled_file("general", lang), REQUIRED_FIELDS["dpo"], pair=True)
    assert len(instruct) >= 140 and all(r["language"] == lang for r in instruct)
    assert len({r["task"] for r in instruct}) == 9
    seen = {r["prompt"].strip().lower() for r in general}
    assert not [r["id"] for r in instruct if r["prompt"].strip().lower() in seen]


def test_a_source_reads_several_bundled_sets_in_turn():
    from mixmerge.data.sources import load_source

    one = OmegaConf.create({"source": "bundled", "bundled_name": "general"})
    both = OmegaConf.create({"source": "bundled", "bundled_name": ["general", "instruct"]})
    general = load_source(one, "data.general", ["hi", "ru"], "sft")
    rows = load_source(both, "data.general", ["hi", "ru"], "sft")
    hi_general = [r for r in general if r["language"] == "hi"]
    assert len(rows) == len(general) + len(
        read_jsonl(bundled_file("instruct", "hi"), REQUIRED_FIELDS["sft"])
    ) + len(read_jsonl(bundled_file("instruct", "ru"), REQUIRED_FIELDS["sft"]))
    assert rows[: len(hi_general)] == hi_general  # per language: general first, then instruct
    assert rows[len(hi_general)]["id"].startswith("hi-ins-")
    for bad in ([], None, [""]):
        src = OmegaConf.create({"source": "bundled", "bundled_name": bad})
        with pytest.raises(MixmergeError, match="data.general.bundled_name="):
            load_source(src, "data.general", ["hi"], "sft")
