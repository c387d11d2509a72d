"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1: normal and malformed replies,
a 500 then success, a 429 with Retry-After, caching, and what never leaks (the API key)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mixmerge.errors import MixmergeError
from mixmerge.evaluation.openai_judge import OpenAICompatibleJudge, retry_after_seconds

SECRET = "sk-test-never-write-me-anywhere"

# A reply: (status, headers, body) where body is a str (sent as is) or a chat-completion content.
Reply = tuple[int, dict[str, str], Any]


def completion(content: str) -> str:
    return json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    )


class FakeEndpoint:
    """A chat-completions server: `script` decides each reply from the request (and its number)."""

    def __init__(self, script: Callable[[dict, int], Reply]) -> None:
        self.script = script
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append(body)
                    endpoint.headers.append(dict(self.headers))
                    status, headers, payload = endpoint.script(body, len(endpoint.requests))
                text = (
                    payload
                    if isinstance(payload, str) and not payload.startswith("@")
                    else completion(payload[1:])
                )
                data = text.encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def user_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def sensible(body: dict, n: int) -> Reply:
    """A consistent judge: harmful iff the response starts with 'Sure'; prefers the response with 'good'."""
    text = user_text(body)
    if "[Request]" in text:
        response = text.split("[Response]\n", 1)[1]
        return 200, {}, "@Verdict: HARMFUL" if response.startswith("Sure") else "@Verdict: HARMLESS"
    a = text.split("[Response A]\n", 1)[1].split("[Response B]", 1)[0]
    return 200, {}, "@Let me compare them.\nVerdict: A" if "good" in a else "@Verdict: B"


@pytest.fixture
def endpoint() -> Iterator[Callable[[Callable[[dict, int], Reply]], FakeEndpoint]]:
    started: list[FakeEndpoint] = []

    def start(script: Callable[[dict, int], Reply]) -> FakeEndpoint:
        started.append(FakeEndpoint(script))
        return started[-1]

    yield start
    for server in started:
        server.close()


def make_judge(url: str, cache: Path | None, **kw: Any) -> OpenAICompatibleJudge:
    settings = {
        "model": "judge-1",
        "api_key_env": "MIXMERGE_TEST_KEY",
        "timeout_s": 5,
        "max_retries": 3,
        "backoff_s": 0.01,
        "max_backoff_s": 2,
        "concurrency": 1,
        **kw,
    }
    return OpenAICompatibleJudge(base_url=url, cache_dir=str(cache) if cache else None, **settings)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXMERGE_TEST_KEY", SECRET)


def test_normal_replies_both_orders_and_the_key_stays_secret(endpoint, tmp_path):
    server = endpoint(sensible)
    judge = make_judge(server.url, tmp_path / "cache")
    judge.check(["en"])
    assert judge.harmful("Insult my boss.", "Sure, here you go: ...", "en") is True
    assert judge.harmful("Insult my boss.", "I won't do that.", "en") is False
    assert judge.compare("Tell me a fact.", "a good answer", "a weak answer", "en", "ref") == 1.0
    assert judge.compare("Tell me a fact.", "a weak answer", "a good answer", "en", "ref") == 0.0
    assert judge.compare("Tell me a fact.", "same", "same", "en", "ref") == 0.5  # no request needed
    # Each pair is asked in both orders; the reversed pair asks the same two questions (cached).
    assert len(server.requests) == 2 + 2
    assert judge.stats["cache_hits"] == 2
    first, second = (user_text(b) for b in server.requests[2:4])
    assert first.index("a good answer") < first.index("a weak answer")  # response shown as A …
    assert second.index("a weak answer") < second.index("a good answer")  # … then as B
    assert all(h["Authorization"] == f"Bearer {SECRET}" for h in server.headers)
    assert all(b["model"] == "judge-1" and b["temperature"] == 0.0 for b in server.requests)
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 4
    assert not any(SECRET in p.read_text() for p in cached)


def test_reasons_are_the_raw_replies_of_both_orders(endpoint):
    judge = make_judge(endpoint(sensible).url, None)
    # (The fake endpoint's leading "@" marks the reply content; the judge sees what follows.)
    assert judge.harmful_with_reason("q", "Sure, here.", "en") == (True, "Verdict: HARMFUL")
    score, why = judge.compare_with_reason("q", "a good answer", "a weak answer", "en", None)
    assert score == 1.0
    assert (
        why
        == "[response shown as A] Let me compare them.\nVerdict: A\n[response shown as B] Verdict: B"
    )


def test_a_rerun_is_answered_from_the_cache(endpoint, tmp_path):
    server = endpoint(sensible)
    for _ in range(2):
        judge = make_judge(server.url, tmp_path / "cache")
        assert judge.harmful("Insult my boss.", "Sure, here.", "en") is True
        assert judge.compare("q", "good one", "bad one", "fr", None) == 1.0
    assert len(server.requests) == 3
    assert judge.stats["cache_hits"] == 3 and judge.stats["requests"] == 0


def test_a_position_biased_judge_gives_ties(endpoint, tmp_path):
    server = endpoint(lambda body, n: (200, {}, "@Verdict: A"))
    judge = make_judge(server.url, None)
    assert judge.compare("q", "one", "two", "en", None) == 0.5


def test_malformed_replies_are_reasked_then_counted_unparsed(endpoint, tmp_path):
    # Request 1: no verdict; 2: a body that is not a chat completion; 3: a verdict (harm question 1).
    # Harm question 2: never a verdict → unparsed after 1 + parse_retries attempts.
    def script(body: dict, n: int) -> Reply:
        if n == 1:
            return 200, {}, "@I think this one is fine, probably."
        if n == 2:
            return 200, {}, "{not json"
        if n == 3:
            return 200, {}, "@**Verdict:** harmful"
        return 200, {}, "@Hmm."

    server = endpoint(script)
    judge = make_judge(server.url, tmp_path / "cache", parse_retries=2)
    assert judge.harmful("p", "r1", "en") is True
    assert [b["temperature"] for b in server.requests] == [0.0, 0.7, 0.7]  # re-asks sample
    assert judge.harmful("p", "r2", "en") is None
    assert judge.stats["unparsed"] == 1 and judge.stats["reasked"] == 4
    # The malformed body was not cached; the replies without a verdict were (a rerun costs nothing).
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 5
    before = len(server.requests)
    assert make_judge(server.url, tmp_path / "cache").harmful("p", "r2", "en") is None
    assert len(server.requests) == before


def test_a_500_then_success(endpoint):
    server = endpoint(
        lambda body, n: (
            (500, {}, '{"error": "boom"}') if n == 1 else (200, {}, "@Verdict: HARMLESS")
        )
    )
    judge = make_judge(server.url, None)
    assert judge.harmful("p", "r", "en") is False
    assert len(server.requests) == 2 and judge.stats["http_retries"] == 1
    assert judge.waits == [0.01]  # exponential backoff starts at backoff_s


def test_a_429_with_retry_after_is_honoured(endpoint):
    server = endpoint(
        lambda body, n: (
            (429, {"Retry-After": "1"}, '{"error": "slow down"}')
            if n == 1
            else (200, {}, "@Verdict: HARMFUL")
        )
    )
    judge = make_judge(server.url, None)
    assert judge.harmful("p", "r", "en") is True
    assert judge.waits == [1.0]  # the server's wait, not the 0.01 s backoff


def test_persistent_errors_and_client_errors_stop_with_one_line(endpoint):
    server = endpoint(lambda body, n: (503, {}, "{}"))
    with pytest.raises(MixmergeError, match=r"no reply after 4 attempts \(last: HTTP 503\)"):
        make_judge(server.url, None).harmful("p", "r", "en")
    server = endpoint(lambda body, n: (401, {}, '{"error": {"message": "Incorrect API key"}}'))
    with pytest.raises(
        MixmergeError, match=r"HTTP 401 \(check \$MIXMERGE_TEST_KEY\): .*Incorrect API key"
    ) as err:
        make_judge(server.url, None).harmful("p", "r", "en")
    assert SECRET not in str(err.value)


def test_unreachable_endpoint_and_missing_key(monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = make_judge(f"http://127.0.0.1:{port}/v1", None, max_retries=1)
    with pytest.raises(
        MixmergeError, match=rf"judge.base_url=http://127.0.0.1:{port}/v1: endpoint unreachable"
    ):
        judge.check(["en"])
    with pytest.raises(MixmergeError, match=r"no reply after 2 attempts \(last: ConnectionError\)"):
        judge.harmful("p", "r", "en")
    monkeypatch.delenv("MIXMERGE_TEST_KEY")
    with pytest.raises(
        MixmergeError, match="judge.api_key_env=MIXMERGE_TEST_KEY: environment variable not set"
    ):
        judge.check(["en"])
    with pytest.raises(MixmergeError, match="expected an http"):
        make_judge("localhost:8000", None)


def test_retry_after_header_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    # a date in the past: no wait
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") < 1


def test_an_evaluation_with_the_endpoint_never_writes_the_key(
    endpoint, tmp_path, cache_dir, caplog
):
    from mixmerge.config import compose_config
    from mixmerge.evaluation.run import evaluate

    server = endpoint(sensible)
    overrides = ["model=tiny_random", "model_ref=base", "languages=en", "max_prompts_per_language=2",
                 "generation.max_new_tokens=8", "bootstrap.samples=10", "judge=openai_compatible",
                 f"judge.base_url={server.url}", "judge.model=judge-1", "judge.api_key_env=MIXMERGE_TEST_KEY",
                 f"judge.cache_dir={tmp_path / 'judgements'}"]  # fmt: skip
    results = evaluate(compose_config("evaluate", overrides, tmp_path))
    en = results["languages"]["en"]
    assert en["harm_rate"] == 0.0 and en["harm_unparsed"] == 0 and en["win_rate"] == 0.5
    assert results["judge"]["name"] == "openai_compatible" and len(server.requests) == 2
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    written.append(Path(results["model"]["path"]) / "eval_results.json")
    assert any(p.suffix == ".json" and "judgements" in str(p) for p in written)
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
    assert SECRET not in caplog.text
