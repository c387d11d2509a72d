"""A judge behind any OpenAI-style chat-completions endpoint (OpenAI, vLLM, TGI, llama.cpp server…)."""

from __future__ import annotations

import email.utils
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import requests

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.llm_judge import ChatJudge

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a Retry-After header asks for: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleJudge(ChatJudge):
    """POSTs `{base_url}/chat/completions`; the API key comes only from the env var `api_key_env`.

    Connection errors, timeouts, 5xx and 429 are retried with exponential backoff (a 429's
    Retry-After is honoured); other 4xx replies stop the run with the server's message. The key is
    never part of a cache key, a cache file, a log line or the results.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        name: str = "openai_compatible",
        api_key_env: str | None = "OPENAI_API_KEY",
        cache_dir: str | None = None,
        temperature: float = 0.0,
        retry_temperature: float = 0.7,
        max_tokens: int = 512,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        parse_retries: int = 2,
        concurrency: int = 4,
    ) -> None:
        super().__init__(name, cache_dir, parse_retries, concurrency)
        parsed = urlparse(str(base_url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise MixmergeError(
                f"judge.base_url={base_url}: expected an http(s) URL such as https://api.openai.com/v1"
            )
        if not model:
            raise MixmergeError("judge.model: required (the judge model's name at the endpoint)")
        self.base_url = str(base_url).rstrip("/")
        self.model = str(model)
        self.api_key_env = api_key_env
        self.temperature = float(temperature)
        self.retry_temperature = float(retry_temperature)
        self.max_tokens = int(max_tokens)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.waits: list[float] = []  # every pause before a retry, in seconds (reported in stats)
        self._session = requests.Session()

    def _identity(self) -> dict[str, Any]:
        return {
            "kind": "openai_compatible",
            "base_url": self.base_url,
            "model": self.model,
            "max_tokens": self.max_tokens,
        }

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(str(self.api_key_env))
        if not key:
            raise MixmergeError(
                f"judge.api_key_env={self.api_key_env}: environment variable not set "
                "(export it, or set judge.api_key_env=null for an endpoint without keys)"
            )
        return key

    def check(self, languages: Sequence[str]) -> None:
        """Fail before generation if the key is missing or nothing listens at the endpoint."""
        self._api_key()
        parsed = urlparse(self.base_url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection(
                (parsed.hostname, port), timeout=min(self.timeout_s, 10.0)
            ).close()
        except OSError as err:
            raise MixmergeError(
                f"judge.base_url={self.base_url}: endpoint unreachable ({err.strerror or err})"
            ) from None

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        # The server's Retry-After replaces the exponential backoff; both are capped at max_backoff_s.
        delay = min(
            retry_after if retry_after is not None else self.backoff_s * 2**attempt,
            self.max_backoff_s,
        )
        with self._lock:
            self.waits.append(delay)
        self._count("http_retries")
        time.sleep(delay)

    def _temperature(self, attempt: int) -> float:
        return self.temperature if attempt == 0 else self.retry_temperature

    def _complete(self, messages: list[dict[str, str]], attempt: int) -> str | None:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self._temperature(attempt),
            "max_tokens": self.max_tokens,
        }
        return _content(self._post("/chat/completions", body))

    def complete_text(self, prompt: str, attempt: int) -> str | None:
        """A raw-text completion (`/completions`): for models with a prompt format of their own
        rather than a chat template (e.g. WildGuard)."""
        body = {
            "model": self.model,
            "prompt": prompt,
            "temperature": self._temperature(attempt),
            "max_tokens": self.max_tokens,
        }
        return _text(self._post("/completions", body))

    def _post(self, path: str, body: dict[str, Any]) -> requests.Response:
        """POST with retries (connection errors, timeouts, 5xx, 429); other 4xx stop the run."""
        headers = {"Content-Type": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}{path}"
        last, retry_after = "", None
        for retry in range(self.max_retries + 1):
            if retry:
                self._wait(retry - 1, retry_after)
            retry_after = None
            try:
                reply = self._session.post(url, json=body, headers=headers, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as err:
                last = type(err).__name__
                continue
            if reply.status_code == 429 or reply.status_code >= 500:
                last = f"HTTP {reply.status_code}"
                retry_after = retry_after_seconds(reply.headers.get("Retry-After"))
                continue
            if reply.status_code != 200:
                detail = " ".join(reply.text.split())[:200]
                hint = (
                    f" (check ${self.api_key_env})"
                    if reply.status_code in (401, 403) and self.api_key_env
                    else ""
                )
                raise MixmergeError(
                    f"judge.base_url={self.base_url}: HTTP {reply.status_code}{hint}: {detail}"
                )
            return reply
        raise MixmergeError(
            f"judge.base_url={self.base_url}: no reply after {self.max_retries + 1} attempts (last: {last})"
        )


def _content(reply: requests.Response) -> str | None:
    """The first choice's text; None for a body that is not a chat completion (re-asked, not cached)."""
    try:
        content = reply.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        log.warning("judge: malformed chat-completion body: %r", reply.text[:160])
        return None
    return content if isinstance(content, str) else None


def _text(reply: requests.Response) -> str | None:
    """The first choice's text of a raw-text completion; None for any other body."""
    try:
        text = reply.json()["choices"][0]["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        log.warning("judge: malformed completion body: %r", reply.text[:160])
        return None
    return text if isinstance(text, str) else None
