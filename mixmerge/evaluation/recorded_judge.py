"""The recorded judge: verdicts somebody already gave, replayed from a labelled file.

A second careful reader's labels of the same responses, or an external judge's verdicts collected
elsewhere (GPT-4 on another machine, a guard model behind a GPU), written in the labelled-set
format (mixmerge/evaluation/labels.py). `python -m mixmerge.judge judge=recorded` then measures
their agreement with the labels by the same code as any other judge's — which is how the bundled
set's inter-reader agreement is measured (`judge=second_reader`, docs/judges.md): the ceiling a
judge can be held to is what two careful readers reach.

A verdict is looked up by what a judge sees — language, prompt and response(s) — not by id, so it
serves any labels file holding the same texts; a pair recorded with A and B the other way round is
mirrored. A response with no recorded verdict is undecided (None), counted in `stats["missing"]`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.judges import ExplainedJudge
from mixmerge.evaluation.labels import HarmItem, load_labels
from mixmerge.evaluation.validation import labels_digest

# The bundled second reader: an independent re-reading of the bundled set's test split.
SECOND_READER = (
    Path(__file__).resolve().parent.parent / "data" / "bundled" / "judgements" / "second_reader"
)
_PAIR_SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5}


class RecordedJudge(ExplainedJudge):
    """Replays the verdicts of a labelled file (or folder); `path=None` is the bundled second
    reader. Two different labels for the same texts are refused: there is no one verdict to replay."""

    def __init__(self, path: str | None = None, name: str = "recorded") -> None:
        self.name = name
        source = SECOND_READER if path is None else Path(path).expanduser()
        if not source.exists():
            raise MixmergeError(f"judge.path={source}: no such file or folder")
        labels = load_labels(source)
        self.files = labels.files
        self._harm: dict[tuple[str, str, str], tuple[bool, str]] = {}
        self._pairs: dict[tuple[str, str, str, str], tuple[float, str]] = {}
        for item in labels.harm + labels.pairs:
            if isinstance(item, HarmItem):
                key: tuple[str, ...] = (item.language, item.prompt, item.response)
                table: dict = self._harm
                verdict: object = item.label == "harmful"
            else:
                key = (item.language, item.prompt, item.response_a, item.response_b)
                table, verdict = self._pairs, _PAIR_SCORE[item.label]
            known = table.get(key)
            if known is not None and known[0] != verdict:
                raise MixmergeError(
                    f"judge.path={source}: ids '{known[1]}' and '{item.id}' give the same "
                    "prompt and response(s) different labels (one verdict each is needed)"
                )
            table[key] = (verdict, item.id)
        # What identifies this judge beyond its settings: the verdicts themselves.
        self.fingerprint = labels_digest(self.files)
        self.stats = {"recorded": len(self._harm) + len(self._pairs), "missing": 0}
        self._lock = threading.Lock()

    def _missing(self) -> None:
        with self._lock:
            self.stats["missing"] += 1

    def harmful_with_reason(
        self, prompt: str, response: str, language: str
    ) -> tuple[bool | None, str | None]:
        found = self._harm.get((language, prompt, response))
        if found is None:
            self._missing()
            return None, "no recorded verdict"
        return found[0], f"recorded as {found[1]}"

    def compare_with_reason(
        self,
        prompt: str,
        response: str,
        baseline_response: str,
        language: str,
        reference: str | None,
    ) -> tuple[float | None, str | None]:
        found = self._pairs.get((language, prompt, response, baseline_response))
        if found is not None:
            return found[0], f"recorded as {found[1]}"
        mirrored = self._pairs.get((language, prompt, baseline_response, response))
        if mirrored is not None:
            return 1.0 - mirrored[0], f"recorded as {mirrored[1]} (A and B swapped)"
        self._missing()
        return None, "no recorded verdict"
