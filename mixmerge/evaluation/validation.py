"""How far a judge can be trusted: its verdicts on labelled real outputs against the labels.

Harm: agreement, Cohen's kappa, precision / recall / F1 of "harmful" and the confusion matrix, per
language and overall. Pairs: agreement on pairs not labelled tie (a judge's tie counts against it
there), 3-way agreement and kappa with ties, the 3×3 confusion matrix. A verdict the judge could
not give (an unparsed reply) is counted as unparsed and left out of the figures, never guessed.

A judge's shipped figures (`validated/<judge name>.json`, or a learned judge's own file) travel
into every evaluation it makes (`eval_results.json` → `judge.validation`) and into the report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixmerge.evaluation.judges import _map, judge_fingerprint
from mixmerge.evaluation.labels import HarmItem, LabelSet, PairItem

VALIDATED_DIR = Path(__file__).resolve().parent / "validated"
VALIDATION_FILE = "judge_validation.json"
HARM_LABELS = ("harmful", "harmless")
PAIR_LABELS = ("a", "b", "tie")
# Judge settings that change where or how fast a judge runs, not what it answers: a validation
# made with other values still describes the judge.
_RUNTIME_KEYS = {
    "cache_dir", "models_dir", "concurrency", "api_key_env", "timeout_s", "max_retries",
    "backoff_s", "max_backoff_s", "base_url", "dtype",
}  # fmt: skip


def _number(value: float) -> float | None:
    """A figure for JSON: rounded, and None where it is undefined (e.g. kappa with one class)."""
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def _kappa(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if not gold or len(set(gold) | set(pred)) < 2:
        return None  # undefined: chance agreement is 1
    return _number(cohen_kappa_score(gold, pred, labels=list(labels)))


def _confusion(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict:
    """{gold label: {predicted label: count}} (rows: the careful labels; columns: the judge)."""
    from sklearn.metrics import confusion_matrix

    if not gold:
        return {g: dict.fromkeys(labels, 0) for g in labels}
    matrix = confusion_matrix(gold, pred, labels=list(labels))
    return {g: {p: int(matrix[i, j]) for j, p in enumerate(labels)} for i, g in enumerate(labels)}


def harm_figures(gold: Sequence[str], pred: Sequence[str | None]) -> dict[str, Any]:
    """Agreement, kappa, precision/recall/F1 of "harmful" and the confusion matrix (unparsed left out)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if p is not None]
    g = [a for a, _ in pairs]
    p = [b for _, b in pairs]
    out: dict[str, Any] = {
        "n": len(gold),
        "decided": len(pairs),
        "unparsed": len(gold) - len(pairs),
    }
    out["gold_harmful"] = sum(x == "harmful" for x in gold)
    if not pairs:
        return {**out, "agreement": None, "kappa": None, "precision": None, "recall": None,
                "f1": None, "confusion": _confusion(g, p, HARM_LABELS)}  # fmt: skip
    precision, recall, f1, _ = precision_recall_fscore_support(
        g, p, labels=["harmful"], average="binary", pos_label="harmful", zero_division=float("nan")
    )
    return {
        **out,
        "agreement": _number(accuracy_score(g, p)),
        "kappa": _kappa(g, p, HARM_LABELS),
        "precision": _number(precision),
        "recall": _number(recall),
        "f1": _number(f1),
        "confusion": _confusion(g, p, HARM_LABELS),
    }


def pair_figures(gold: Sequence[str], pred: Sequence[str | None]) -> dict[str, Any]:
    """Agreement on pairs not labelled tie, 3-way agreement and kappa, the confusion matrix."""
    from sklearn.metrics import accuracy_score

    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if p is not None]
    g = [a for a, _ in pairs]
    p = [b for _, b in pairs]
    non_tie = [(a, b) for a, b in pairs if a != "tie"]
    decisive = [(a, b) for a, b in non_tie if b != "tie"]
    return {
        "n": len(gold),
        "decided": len(pairs),
        "unparsed": len(gold) - len(pairs),
        "gold_ties": sum(x == "tie" for x in gold),
        "non_tie": len(non_tie),
        # On pairs a careful reader found one answer clearly better: the judge must pick it.
        "agreement_non_tie": _number(sum(a == b for a, b in non_tie) / len(non_tie))
        if non_tie
        else None,
        # … and where the judge did not call it a tie either.
        "agreement_decisive": _number(sum(a == b for a, b in decisive) / len(decisive))
        if decisive
        else None,
        "agreement": _number(accuracy_score(g, p)) if pairs else None,
        "kappa": _kappa(g, p, PAIR_LABELS),
        "confusion": _confusion(g, p, PAIR_LABELS),
    }


def _per_language(
    items: Sequence[HarmItem | PairItem], verdicts: Sequence[str | None], figures: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"overall": figures([i.label for i in items], verdicts)}
    per: dict[str, Any] = {}
    for lang in dict.fromkeys(i.language for i in items):
        chosen = [(i.label, v) for i, v in zip(items, verdicts, strict=True) if i.language == lang]
        per[lang] = figures([c for c, _ in chosen], [v for _, v in chosen])
    out["per_language"] = per
    return out


def pair_label(score: float | None) -> str | None:
    """A judge's score for response A against B as a label: a, b, tie (None stays unparsed)."""
    if score is None:
        return None
    return "a" if score > 0.5 else "b" if score < 0.5 else "tie"


def judge_verdicts(judge: Any, labels: LabelSet) -> tuple[list[str | None], list[str | None]]:
    """The judge's harm labels and pair labels for every labelled item, in order."""
    workers = getattr(judge, "concurrency", 1)
    harm = _map(
        lambda i: judge.harmful(i.prompt, i.response, i.language),
        labels.harm,
        workers,
        "validating harm",
    )
    pairs = _map(
        lambda i: judge.compare(i.prompt, i.response_a, i.response_b, i.language, i.reference),
        labels.pairs,
        workers,
        "validating pairs",
    )
    harm_labels = [None if h is None else ("harmful" if h else "harmless") for h in harm]
    return harm_labels, [pair_label(s) for s in pairs]


def validate(judge: Any, labels: LabelSet) -> dict[str, Any]:
    """The judge's figures on every item of `labels` (one split, usually test)."""
    harm, pairs = judge_verdicts(judge, labels)
    return {
        "harm": _per_language(labels.harm, harm, harm_figures) if labels.harm else None,
        "pairs": _per_language(labels.pairs, pairs, pair_figures) if labels.pairs else None,
    }


def labels_digest(files: Sequence[str]) -> str:
    """sha256 of the labelled files' bytes, in order (which labels a validation was made on)."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()


def judge_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The judge settings that decide its verdicts (see _RUNTIME_KEYS)."""
    return {k: v for k, v in config.items() if k not in _RUNTIME_KEYS}


def same_judge(recorded: dict[str, Any] | None, config: dict[str, Any], judge: Any) -> bool:
    """Whether an evaluation's recorded judge (eval_results.json's `judge`) is the configured one:
    same name, same verdict-deciding settings and, for a trained judge, the same weights."""
    recorded = recorded or {}
    return (
        recorded.get("name") == getattr(judge, "name", None)
        and judge_identity(recorded.get("config") or {}) == judge_identity(config)
        and recorded.get("fingerprint") == judge_fingerprint(judge)
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def format_validation(result: dict[str, Any]) -> str:
    """A short table of a validation: harm and pairwise figures per language and overall."""
    lines = [
        f"Judge {result['judge']['name']} on {result['labels']['split']} split of "
        f"{', '.join(result['labels']['files'])}"
    ]
    figures = result["figures"]
    if figures["harm"]:
        lines.append(
            f"{'harm':<8}{'n':>5}{'agree':>8}{'kappa':>8}{'prec':>7}{'recall':>8}{'F1':>6}{'unparsed':>10}"
        )
        rows = {**figures["harm"]["per_language"], "all": figures["harm"]["overall"]}
        for lang, f in rows.items():
            lines.append(
                f"{lang:<8}{f['n']:>5}{_pct(f['agreement']):>8}{_num(f['kappa']):>8}"
                f"{_pct(f['precision']):>7}{_pct(f['recall']):>8}{_num(f['f1']):>6}{f['unparsed']:>10}"
            )
    if figures["pairs"]:
        lines.append(
            f"{'pairs':<8}{'n':>5}{'non-tie':>9}{'agree':>8}{'3-way':>8}{'kappa':>8}{'unparsed':>10}"
        )
        rows = {**figures["pairs"]["per_language"], "all": figures["pairs"]["overall"]}
        for lang, f in rows.items():
            lines.append(
                f"{lang:<8}{f['n']:>5}{f['non_tie']:>9}{_pct(f['agreement_non_tie']):>8}"
                f"{_pct(f['agreement']):>8}{_num(f['kappa']):>8}{f['unparsed']:>10}"
            )
    return "\n".join(lines)


def summary(result: dict[str, Any], source: str) -> dict[str, Any]:
    """The figures an evaluation carries about its judge: overall, and agreement per language."""
    figures = result["figures"]
    harm, pairs = figures.get("harm"), figures.get("pairs")
    keep_h = ("n", "unparsed", "agreement", "kappa", "precision", "recall", "f1")
    keep_p = ("n", "unparsed", "non_tie", "agreement_non_tie", "agreement", "kappa")
    return {
        "source": source,
        "labels": {k: result["labels"][k] for k in ("split", "sha256", "items")},
        "harm": {k: harm["overall"][k] for k in keep_h} if harm else None,
        "pairs": {k: pairs["overall"][k] for k in keep_p} if pairs else None,
        "per_language": {
            lang: {
                "harm_agreement": (harm or {})
                .get("per_language", {})
                .get(lang, {})
                .get("agreement"),
                "pair_agreement_non_tie": (pairs or {})
                .get("per_language", {})
                .get(lang, {})
                .get("agreement_non_tie"),
            }
            for lang in dict.fromkeys(
                [*(harm or {}).get("per_language", {}), *(pairs or {}).get("per_language", {})]
            )
        },
    }


def shipped_validation(judge: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """The validated figures that ship with this judge, or None: a learned judge's own (from its
    trained file), else `validated/<name>.json` when it was made with the same judge settings."""
    own = getattr(judge, "validation", None)
    if callable(own):
        own = own()
    if isinstance(own, dict):
        return own
    path = VALIDATED_DIR / f"{getattr(judge, 'name', '')}.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        if judge_identity(result["judge"]["config"]) != judge_identity(config):
            return None  # validated with other settings (another model, another margin)
        return summary(result, str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def validation_note(name: str, found: dict[str, Any] | None) -> str:
    """One line for a judge: its validated figures on labelled real outputs, or that it has none."""
    if not found:
        return f"{name} (not validated on labelled real outputs: python -m mixmerge.judge judge={name})"
    parts = []
    harm, pairs = found.get("harm"), found.get("pairs")
    if harm:
        parts.append(
            f"harm agreement {_pct(harm.get('agreement'))}, kappa {_num(harm.get('kappa'))}, "
            f"recall {_pct(harm.get('recall'))} (n={harm.get('n')})"
        )
    if pairs:
        parts.append(
            f"pairwise agreement {_pct(pairs.get('agreement_non_tie'))} on non-tie pairs "
            f"(n={pairs.get('non_tie')})"
        )
    split = (found.get("labels") or {}).get("split", "?")
    return f"{name} (validated on the labelled {split} split: {'; '.join(parts) or 'no figures'})"
