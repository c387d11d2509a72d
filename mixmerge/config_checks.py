"""Type and range checks for user-facing config keys, declared as tables per entry point.

Hydra checks the config's shape (known groups and keys), not its values: `trainer.max_steps=ten`
or `seed=-1` compose fine and then fail deep inside Lightning, numpy or mergekit with a traceback.
Each entry point declares here what its numeric and choice keys accept, and checks them all
before anything is built. A key absent from the composed config (another judge, another
objective) is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mixmerge.errors import MixmergeError

_ABSENT = object()


@dataclass(frozen=True)
class Number:
    """A number (an integer when `integer`) within optional bounds; null only when `optional`."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < x instead of low <= x
    high_open: bool = False
    optional: bool = False
    gradient: bool = False  # a non-empty list of such numbers is accepted too (per-layer values)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = kind
        if self.gradient:
            text += " or a list of them"
        return text + (" or null" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.gradient and isinstance(value, (ListConfig, list)):
            return len(value) > 0 and all(self._scalar(v) for v in value)
        return self._scalar(value)

    def _scalar(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, Real):
            return False
        if self.integer and int(value) != value:
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values (null only when `optional`)."""

    values: tuple[Any, ...]
    optional: bool = False

    def describe(self) -> str:
        shown = ", ".join(str(v) for v in self.values)
        return f"one of {shown}" + (" or null" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return not isinstance(value, bool) and value in self.values


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def describe(self) -> str:
        return "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


Rule = Number | Choice | Flag

SEED = Number(integer=True, low=0, high=2**32 - 1)  # numpy's and Lightning's seed range


def _show(value: Any) -> str:
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value)
    if value is None:
        return "null"
    if value == "":
        return "''"
    return str(value)


def check_values(cfg: DictConfig, rules: Mapping[str, Rule]) -> None:
    """Raise one MixmergeError for the first key whose value its rule does not accept."""
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if not rule.accepts(value):
            raise MixmergeError(f"{key}={_show(value)}: expected {rule.describe()}")


def lightning_precisions() -> tuple[Any, ...]:
    """Every `trainer.precision` value Lightning accepts (from its own type)."""
    import typing

    from lightning.fabric.connector import _PRECISION_INPUT

    def flat(tp: Any) -> Iterable[Any]:
        for arg in typing.get_args(tp):
            yield from flat(arg) if typing.get_args(arg) else (arg,)

    return tuple(flat(_PRECISION_INPUT))


def train_rules() -> dict[str, Rule]:
    return {
        "seed": SEED,
        "data.max_examples_per_language": Number(integer=True, low=1, optional=True),
        "data.num_workers": Number(integer=True, low=0),
        "trainer.max_steps": Number(integer=True, low=-1),  # -1: no limit (Lightning's convention)
        "trainer.max_epochs": Number(integer=True, low=-1, optional=True),
        "trainer.accumulate_grad_batches": Number(integer=True, low=1),
        "trainer.gradient_clip_val": Number(low=0, optional=True),
        "trainer.precision": Choice(lightning_precisions()),
        "probe_batches": Number(integer=True, low=0),
        "objective.optimizer.lr": Number(low=0, low_open=True),
        "objective.optimizer.weight_decay": Number(low=0),
        "objective.beta": Number(low=0, low_open=True),
        "objective.label_smoothing": Number(low=0, high=0.5, high_open=True),
        "overwrite": Flag(),
        "skip_existing": Flag(),
    }


MERGE_DTYPES = ("float32", "float16", "bfloat16", "float64")


def merge_rules() -> dict[str, Rule]:
    return {
        "seed": SEED,
        "merge.seed": Number(integer=True, low=0, high=2**32 - 1, optional=True),
        "merge.dtype": Choice(MERGE_DTYPES, optional=True),
        "merge.out_dtype": Choice(MERGE_DTYPES, optional=True),
        "merge.density": Number(low=0, high=1, low_open=True, gradient=True),
        "overwrite": Flag(),
        "skip_existing": Flag(),
        "evaluate_after": Flag(),
    }


def evaluate_rules() -> dict[str, Rule]:
    return {
        "seed": SEED,
        "generation.temperature": Number(low=0, low_open=True),
        "generation.top_p": Number(low=0, high=1, low_open=True),
        "generation.do_sample": Flag(),
        "generation.cache": Flag(),
        "generation.dtype": Choice(("float32", "bfloat16", "float16")),
        "generation.decoder": Choice(("fast", "generate")),
        "judge.tie_margin": Number(low=0, high=1, high_open=True),
        "judge.harm_threshold": Number(low=0, high=1, low_open=True, high_open=True, optional=True),
        "fluency_threshold": Number(low=0, high=1),
        "skip_existing": Flag(),
    }
