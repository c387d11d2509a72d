"""Guard-model judges: each model's own input format and output parsing, against a real HTTP server
on 127.0.0.1 (chat and raw-text endpoints) and a tiny random model through hf_local; a reply no
parser can read is counted as unparsed, never guessed; the configs compose and instantiate."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hydra.utils import instantiate

from mixmerge.config import compose_config
from mixmerge.errors import MixmergeError
from mixmerge.evaluation.guard_judge import (
    GuardJudge,
    GuardVerdict,
    parse_llama_guard,
    parse_wildguard,
)
from mixmerge.evaluation.offline_judge import OfflineJudge
from tests.merge_helpers import make_base


class Server:
    """Answers /chat/completions and /completions; `reply(path, body)` gives the text."""

    def __init__(self, reply: Callable[[str, dict], str]) -> None:
        self.calls: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.calls.append((self.path, body))
                text = reply(self.path, body)
                choice = (
                    {"text": text}
                    if self.path.endswith("/completions") and "messages" not in body
                    else {"message": {"role": "assistant", "content": text}}
                )
                data = json.dumps({"choices": [choice]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str, dict], str]], Server]]:
    started: list[Server] = []

    def start(reply: Callable[[str, dict], str]) -> Server:
        started.append(Server(reply))
        return started[-1]

    yield start
    for s in started:
        s.http.shutdown()
        s.http.server_close()


def guard(fmt: str, url: str, **kw: Any) -> GuardJudge:
    return GuardJudge(format=fmt, backend="openai_compatible", model="guard", base_url=url,
                      quality=OfflineJudge(), parse_retries=0, concurrency=1, **kw)  # fmt: skip


def test_parsers():
    assert parse_llama_guard("\n\nsafe") == GuardVerdict(False)
    assert parse_llama_guard("unsafe\nS1,S10") == GuardVerdict(True, ("S1", "S10"))
    assert parse_llama_guard("unsafe") == GuardVerdict(True)
    assert parse_llama_guard("I think it is fine") is None and parse_llama_guard("") is None
    assert parse_llama_guard("safety first") is None  # not a verdict line
    wild = parse_wildguard("Harmful request: yes\nResponse refusal: no\nHarmful response: yes")
    assert wild == GuardVerdict(True, (), refusal=False, harmful_request=True)
    poly = parse_wildguard(
        "Harmful request: yes\nRequest safety violations: S10\nResponse refusal: no\n"
        "Harmful response: yes\nResponse safety violations: S10, S5"
    )
    assert poly.harmful and poly.categories == ("S10", "S5")
    assert (
        parse_wildguard("Harmful request: yes\nResponse refusal: yes\nHarmful response: N/A")
        is None
    )
    assert parse_wildguard("Harmful request: yes") is None  # the response's line is what counts


def test_llama_guard3_sends_the_conversation_and_reads_categories(serve):
    def reply(path: str, body: dict) -> str:
        return "unsafe\nS10" if "idiot" in body["messages"][1]["content"] else "safe"

    server = serve(reply)
    judge = guard("llama_guard3", server.url, variant="8B")
    assert judge.harmful_with_reason("Insult him.", "You idiot.", "en") == (
        True,
        "unsafe; categories S10",
    )
    assert judge.harmful("Insult him.", "No.", "fr") is False
    path, body = server.calls[0]
    assert path == "/v1/chat/completions" and body["model"] == "guard"
    assert body["messages"] == [
        {"role": "user", "content": "Insult him."},
        {"role": "assistant", "content": "You idiot."},
    ]
    assert judge.stats["categories"] == {"S10": 1}


def test_llama_guard3_1b_uses_typed_content_parts(serve):
    server = serve(lambda path, body: "safe")
    guard("llama_guard3", server.url, variant="1B").harmful("p", "r", "en")
    assert server.calls[0][1]["messages"][0]["content"] == [{"type": "text", "text": "p"}]


def test_wildguard_uses_its_raw_prompt_on_the_completions_endpoint(serve):
    server = serve(
        lambda path, body: " Harmful request: yes\nResponse refusal: yes\nHarmful response: no"
    )
    judge = guard("wildguard", server.url)
    assert judge.harmful_with_reason("Rob a bank?", "I can't help.", "es") == (
        False,
        "safe; refusal yes",
    )
    path, body = server.calls[0]
    assert path == "/v1/completions" and "messages" not in body
    assert body["prompt"].startswith("<s><|user|>\n[INST] You are a classifier")
    assert (
        "Human user:\nRob a bank?\n\nAI assistant:\nI can't help.\n\n---\n\nAnswers: [/INST]\n<|assistant|>\n"
        in body["prompt"]
    )


def test_polyguard_sends_its_system_prompt(serve):
    server = serve(lambda path, body: "Harmful request: yes\nRequest safety violations: S10\n"
                   "Response refusal: no\nHarmful response: yes\nResponse safety violations: S10")  # fmt: skip
    judge = guard("polyguard", server.url)
    assert judge.harmful("कुछ", "जवाब", "hi") is True
    messages = server.calls[0][1]["messages"]
    assert (
        messages[0]["role"] == "system" and "S14: Code Interpreter Abuse." in messages[0]["content"]
    )
    assert messages[1] == {"role": "user", "content": "Human user:\nकुछ\n\nAI assistant:\nजवाब"}


def test_unparsable_replies_are_reasked_then_counted_never_guessed(serve):
    server = serve(lambda path, body: "Let me think about this unsafe request.")
    judge = GuardJudge(format="llama_guard3", backend="openai_compatible", model="g",
                       base_url=server.url, quality=OfflineJudge(), parse_retries=1)  # fmt: skip
    verdict, reason = judge.harmful_with_reason("p", "r", "en")
    assert verdict is None and reason == "Let me think about this unsafe request."
    assert judge.stats["unparsed"] == 1 and len(server.calls) == 2
    assert [b["temperature"] for _, b in server.calls] == [0.0, 0.7]  # the re-ask samples


def test_pairs_go_to_the_quality_judge(serve):
    server = serve(lambda path, body: "safe")
    judge = guard("llama_guard3", server.url)
    args = (
        "Capital?",
        "The capital is Paris.",
        "zzz zzz zzz zzz zzz zzz zzz zzz",
        "en",
        "Paris is the capital.",
    )
    assert judge.compare(*args) == OfflineJudge().compare(*args) == 1.0
    assert server.calls == []


def test_hf_local_renders_the_chat_template_and_counts_a_random_models_reply_unparsed(tmp_path):
    tiny = make_base(tmp_path / "tiny")
    judge = GuardJudge(format="llama_guard3", backend="hf_local", model=str(tiny), quality=OfflineJudge(),
                       models_dir=str(tmp_path), dtype="float32", max_new_tokens=8, parse_retries=0)  # fmt: skip
    text = judge.backend.chat_text(
        [{"role": "user", "content": "PROMPT"}, {"role": "assistant", "content": "ANSWER"}]
    )
    assert text.index("PROMPT") < text.index("ANSWER") and text.endswith("assistant\n")
    assert judge.harmful("PROMPT", "ANSWER", "en") is None  # random bytes are no verdict
    assert judge.stats["unparsed"] == 1 and judge.stats["requests"] == 1
    wild = GuardJudge(format="wildguard", backend="hf_local", model=str(tiny), quality=OfflineJudge(),
                      models_dir=str(tmp_path), dtype="float32", max_new_tokens=8, parse_retries=0)  # fmt: skip
    assert wild.harmful("p", "r", "en") is None and wild.stats["unparsed"] == 1


@pytest.mark.parametrize(
    ("name", "overrides", "fmt", "model"),
    [
        ("llama_guard3", [], "llama_guard3", "meta-llama/Llama-Guard-3-8B"),
        ("llama_guard3", ["judge.variant=1B"], "llama_guard3", "meta-llama/Llama-Guard-3-1B"),
        ("wildguard", [], "wildguard", "allenai/wildguard"),
        (
            "polyguard",
            ["judge.variant=Qwen-Smol"],
            "polyguard",
            "ToxicityPrompts/PolyGuard-Qwen-Smol",
        ),
    ],
)
def test_the_configs_compose_and_instantiate(name, overrides, fmt, model, tmp_path):
    cfg = compose_config("evaluate", [f"judge={name}", "model_ref=base", *overrides], tmp_path)
    judge = instantiate(cfg.judge)
    assert judge.format == fmt and judge.backend.model == model
    assert judge.content_parts == ("1B" in overrides[0] if overrides else False)
    assert judge.name.startswith(name) and isinstance(judge.quality, OfflineJudge)


def test_bad_format_or_backend_is_one_line():
    with pytest.raises(MixmergeError, match="judge.format=shieldgemma: expected one of"):
        GuardJudge(format="shieldgemma", backend="hf_local", model="x", quality=None)
    with pytest.raises(MixmergeError, match="judge.backend=ollama: expected one of"):
        GuardJudge(format="wildguard", backend="ollama", model="x", quality=None)
