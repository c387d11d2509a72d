"""What LLM judges share: the prompts, both orders for pairwise verdicts, re-asking when a reply
cannot be parsed, counting what stays unparsed, and an on-disk cache of every reply."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mixmerge.evaluation.judges import ExplainedJudge, combine_orders
from mixmerge.evaluation.prompts import harm_messages, pair_messages, parse_harm, parse_pair
from mixmerge.fingerprints import sha256_json
from mixmerge.io import write_json_atomic

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCORE_FIRST = {"A": 1.0, "B": 0.0, "TIE": 0.5}  # the response was shown as A
_SCORE_SECOND = {"A": 0.0, "B": 1.0, "TIE": 0.5}  # the response was shown as B


class ChatJudge(ExplainedJudge):
    """Base class: subclasses implement `_complete(messages, attempt)` and `_identity()`.

    `attempt` 0 is the configured (usually greedy) request; attempts 1..parse_retries re-ask after a
    reply with no verdict, and a subclass may sample then so the same question can get a different
    answer. Each (question, attempt) reply is cached under `cache_dir`, so a rerun costs nothing.
    """

    def __init__(
        self, name: str, cache_dir: str | None, parse_retries: int = 2, concurrency: int = 1
    ) -> None:
        self.name = name
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.parse_retries = int(parse_retries)
        self.concurrency = max(1, int(concurrency))
        self.stats = {
            "requests": 0,
            "cache_hits": 0,
            "reasked": 0,
            "unparsed": 0,
            "http_retries": 0,
        }
        self._lock = threading.Lock()

    # Subclass hooks -------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def _complete(self, messages: list[dict[str, str]], attempt: int) -> str | None:
        raise NotImplementedError

    # Shared machinery -----------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _cache_path(self, messages: list[dict[str, str]], attempt: int) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = sha256_json({"judge": self._identity(), "messages": messages, "attempt": attempt})
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _reply(self, messages: list[dict[str, str]], attempt: int) -> str | None:
        path = self._cache_path(messages, attempt)
        if path is not None and path.is_file():
            try:
                reply = json.loads(path.read_text(encoding="utf-8"))["reply"]
                self._count("cache_hits")
                return reply
            except (OSError, json.JSONDecodeError, KeyError):
                pass  # a damaged cache entry is asked again
        reply = self._complete(messages, attempt)
        self._count("requests")
        if path is not None and reply is not None:
            write_json_atomic(
                path,
                {
                    "judge": self._identity(),
                    "attempt": attempt,
                    "messages": messages,
                    "reply": reply,
                },
            )
        return reply

    def _ask(
        self, messages: list[dict[str, str]], parse: Callable[[str | None], T | None]
    ) -> T | None:
        return self._ask_with_reply(messages, parse)[0]

    def _ask_with_reply(
        self, messages: list[dict[str, str]], parse: Callable[[str | None], T | None]
    ) -> tuple[T | None, str | None]:
        """The parsed verdict and the raw reply it came from (the last reply when none parsed)."""
        reply = None
        for attempt in range(self.parse_retries + 1):
            if attempt:
                self._count("reasked")
            reply = self._reply(messages, attempt)
            value = parse(reply)
            if value is not None:
                return value, reply
        self._count("unparsed")
        log.warning(
            "judge %s: no verdict in the reply after %d attempts: %r",
            self.name,
            self.parse_retries + 1,
            (reply or "")[:160],
        )
        return None, reply

    # The Judge interface ---------------------------------------------------------------------------
    def harmful_with_reason(
        self, prompt: str, response: str, language: str
    ) -> tuple[bool | None, str | None]:
        """The verdict and the judge's raw reply (for the audit file)."""
        return self._ask_with_reply(harm_messages(prompt, response, language), parse_harm)

    def compare_with_reason(
        self,
        prompt: str,
        response: str,
        baseline_response: str,
        language: str,
        reference: str | None,
    ) -> tuple[float | None, str | None]:
        """The combined score and the judge's raw reply in each order (for the audit file)."""
        if response.strip() == baseline_response.strip():
            return 0.5, "identical responses (no judge asked)"
        first, reply_1 = self._ask_with_reply(
            pair_messages(prompt, response, baseline_response, language, reference), parse_pair
        )
        second, reply_2 = self._ask_with_reply(
            pair_messages(prompt, baseline_response, response, language, reference), parse_pair
        )
        score = combine_orders(
            None if first is None else _SCORE_FIRST[first],
            None if second is None else _SCORE_SECOND[second],
        )
        return score, f"[response shown as A] {reply_1}\n[response shown as B] {reply_2}"
