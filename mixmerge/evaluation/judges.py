"""The judge interface every judge implements (selected by the `judge` config group), and running
a judge over a whole evaluation.

A judge answers two questions:
- `harmful(prompt, response, language)`: does the response comply with a harmful request (True),
  or decline/redirect it (False)? None when the judge could not decide (an unparsed reply).
- `compare(prompt, response, baseline_response, language, reference)`: is the response better (1),
  as good (0.5) or worse (0) than the baseline's? None when undecided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from mixmerge.evaluation.metrics import LanguageJudgements


class ExplainedJudge:
    """For judges that give a reason with each verdict (for the audit file): the plain `harmful`
    and `compare` of the Judge interface are the `*_with_reason` methods without the reason."""

    def harmful(self, prompt: str, response: str, language: str) -> bool | None:
        return self.harmful_with_reason(prompt, response, language)[0]  # type: ignore[attr-defined]

    def compare(
        self,
        prompt: str,
        response: str,
        baseline_response: str,
        language: str,
        reference: str | None,
    ) -> float | None:
        return self.compare_with_reason(  # type: ignore[attr-defined]
            prompt, response, baseline_response, language, reference
        )[0]


@runtime_checkable
class Judge(Protocol):
    name: str

    def harmful(self, prompt: str, response: str, language: str) -> bool | None: ...

    def compare(
        self,
        prompt: str,
        response: str,
        baseline_response: str,
        language: str,
        reference: str | None,
    ) -> float | None: ...


def check_judge(judge: Any, languages: Sequence[str]) -> None:
    """Run a judge's cheap pre-flight check (lexicons, reachability, credentials) if it has one,
    before any time is spent generating."""
    check = getattr(judge, "check", None)
    if callable(check):
        check(languages)


def judge_stats(judge: Any) -> dict[str, Any]:
    """A judge's counters (requests, cache hits, retries, unparsed replies), if it keeps any."""
    stats = getattr(judge, "stats", None)
    return dict(stats) if isinstance(stats, dict) else {}


def judge_fingerprint(judge: Any) -> str | None:
    """What identifies a trained judge's weights beyond its settings (a learned judge's file digest),
    or None for judges whose settings say it all."""
    return getattr(judge, "fingerprint", None)


def combine_orders(first: float | None, second: float | None) -> float | None:
    """One pairwise verdict from two orders (first: response shown as A; second: response shown as B,
    both already expressed as the response's score). As in MT-Bench (Zheng et al., 2023), a win or
    loss counts only when both orders agree; any disagreement, position bias included, is a tie."""
    if first is None or second is None:
        return None
    if first == second:
        return first
    return 0.5


def _map(
    fn: Callable[[dict[str, Any]], Any], jobs: Sequence[dict[str, Any]], workers: int, desc: str
) -> list[Any]:
    """fn over jobs in order, on `workers` threads (an HTTP judge waits on the network, not the CPU)."""
    with tqdm(total=len(jobs), desc=desc, unit="judgement") as bar:
        if workers <= 1:
            out = []
            for job in jobs:
                out.append(fn(job))
                bar.update()
            return out
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = []
            for value in pool.map(fn, jobs):
                results.append(value)
                bar.update()
            return results


def verdict_with_reason(judge: Any, kind: str, *args: Any) -> tuple[Any, str | None]:
    """A judge's verdict and its reason (a rule's explanation, an LLM judge's raw reply) when the
    judge gives one (`harmful_with_reason` / `compare_with_reason`), else the verdict alone."""
    explained = getattr(judge, f"{kind}_with_reason", None)
    if callable(explained):
        return explained(*args)
    return getattr(judge, kind)(*args), None


# The fields of one judgements.jsonl record (the audit file beside eval_results.json).
RECORD_FIELDS = (
    "id", "language", "set", "task", "prompt", "reference", "response", "baseline_response",
    "harmful", "harm_reason", "baseline_harmful", "baseline_harm_reason", "win", "win_reason",
)  # fmt: skip


def judge_all(
    judge: Any,
    items: Sequence[dict[str, Any]],
    model_rows: Sequence[dict[str, Any]],
    base_rows: Sequence[dict[str, Any]],
) -> tuple[dict[str, LanguageJudgements], list[dict[str, Any]]]:
    """Harm of both models' red-team responses and pairwise verdicts on general prompts; returns
    the per-language judgements and one auditable record per item (see RECORD_FIELDS)."""
    workers = getattr(judge, "concurrency", 1)
    jobs = [
        {"item": i, "model": m["response"], "base": b["response"]}
        for i, m, b in zip(items, model_rows, base_rows, strict=True)
    ]
    redteam = [j for j in jobs if j["item"]["set"] == "redteam"]
    general = [j for j in jobs if j["item"]["set"] == "general"]

    def harm(response_key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda j: verdict_with_reason(
            judge, "harmful", j["item"]["prompt"], j[response_key], j["item"]["language"]
        )

    harm_model = _map(harm("model"), redteam, workers, "judging harm (model)")
    harm_base = _map(harm("base"), redteam, workers, "judging harm (baseline)")
    wins = _map(
        lambda j: verdict_with_reason(
            judge,
            "compare",
            j["item"]["prompt"],
            j["model"],
            j["base"],
            j["item"]["language"],
            j["item"].get("reference"),
        ),
        general,
        workers,
        "judging quality (pairwise)",
    )

    def record(job: dict[str, Any], **verdicts: Any) -> dict[str, Any]:
        item = job["item"]
        return {
            "id": item["id"], "language": item["language"], "set": item["set"],
            "task": item.get("task"), "prompt": item["prompt"], "reference": item.get("reference"),
            "response": job["model"], "baseline_response": job["base"], **verdicts,
        }  # fmt: skip

    per_language: dict[str, LanguageJudgements] = {}
    records = []
    for job, (h_m, why_m), (h_b, why_b) in zip(redteam, harm_model, harm_base, strict=True):
        lang = job["item"]["language"]
        per_language.setdefault(lang, LanguageJudgements())
        per_language[lang].harm_model.append(h_m)
        per_language[lang].harm_baseline.append(h_b)
        records.append(
            record(job, harmful=h_m, harm_reason=why_m, baseline_harmful=h_b,
                   baseline_harm_reason=why_b)
        )  # fmt: skip
    for job, (win, why) in zip(general, wins, strict=True):
        lang = job["item"]["language"]
        per_language.setdefault(lang, LanguageJudgements()).wins.append(win)
        records.append(record(job, win=win, win_reason=why))
    return per_language, records
