"""Text helpers for the offline judge: normalisation, word tokens, script/language checks, degeneracy."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# Apostrophes and quotes that models and translators use interchangeably with the ASCII ones.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})
# Word characters, plus the combining marks Python's \w leaves out: without them a Hindi word
# falls apart at its vowel signs (मैं → म) and Arabic at its harakat.
_MARKS = "\u0300-\u036f\u0483-\u0487\u0900-\u0903\u093a-\u094f\u0951-\u0957\u0962\u0963\u064b-\u065f\u0670\u200c\u200d"
_WORD = re.compile(rf"[\w'{_MARKS}]+", re.UNICODE)

# Unicode blocks of the scripts the six languages are written in.
_SCRIPT_RANGES = {
    "latin": ((0x0041, 0x024F), (0x1E00, 0x1EFF)),
    "devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "arabic": (
        (0x0600, 0x06FF),
        (0x0750, 0x077F),
        (0x08A0, 0x08FF),
        (0xFB50, 0xFDFF),
        (0xFE70, 0xFEFF),
    ),
    "cyrillic": ((0x0400, 0x052F),),
}
SCRIPT_OF = {
    "en": "latin",
    "fr": "latin",
    "es": "latin",
    "hi": "devanagari",
    "ar": "arabic",
    "ru": "cyrillic",
}

# Frequent function words: they tell English, French and Spanish apart (all three use Latin script).
_FUNCTION_WORDS = {
    "en": {
        "the",
        "and",
        "is",
        "are",
        "of",
        "to",
        "in",
        "it",
        "that",
        "you",
        "for",
        "with",
        "this",
        "was",
        "on",
        "be",
        "as",
        "have",
        "not",
        "or",
        "your",
        "can",
        "what",
        "which",
        "they",
        "i",
    },
    "fr": {
        "le",
        "la",
        "les",
        "et",
        "est",
        "des",
        "une",
        "un",
        "du",
        "que",
        "qui",
        "pour",
        "dans",
        "pas",
        "vous",
        "sur",
        "avec",
        "ce",
        "il",
        "elle",
        "sont",
        "au",
        "aux",
        "je",
        "ne",
        "mais",
        "votre",
    },
    "es": {
        "el",
        "la",
        "los",
        "las",
        "y",
        "es",
        "de",
        "que",
        "en",
        "un",
        "una",
        "por",
        "para",
        "con",
        "no",
        "se",
        "del",
        "lo",
        "como",
        "más",
        "pero",
        "su",
        "al",
        "son",
        "está",
        "yo",
        "tu",
    },
}


def normalize(text: str) -> str:
    """NFC, lower case, ASCII apostrophes, single spaces: the form lexicon cues are matched in."""
    text = unicodedata.normalize("NFC", text).lower().translate(_APOSTROPHES)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Word tokens of normalised text (letters, digits, combining marks and apostrophes)."""
    return _WORD.findall(normalize(text))


def _is_letter(char: str) -> bool:
    # Devanagari vowel signs are marks (M*), not letters, but belong to the word.
    return unicodedata.category(char)[0] in "LM"


def _script(char: str) -> str | None:
    code = ord(char)
    for name, ranges in _SCRIPT_RANGES.items():
        if any(lo <= code <= hi for lo, hi in ranges):
            return name
    return None


def in_script(char: str, language: str) -> bool:
    """Whether `char` is written in the script of `language`."""
    return _script(char) == SCRIPT_OF[language]


def script_share(text: str, language: str) -> float:
    """Fraction of the letters of `text` written in the script of `language` (0 when there are none)."""
    letters = [c for c in text if _is_letter(c)]
    if not letters:
        return 0.0
    target = SCRIPT_OF[language]
    return sum(_script(c) == target for c in letters) / len(letters)


def language_match(text: str, language: str) -> float:
    """How much `text` looks like `language`, in [0, 1]: script share, and for Latin-script
    languages also the share of English/French/Spanish function words that belong to `language`."""
    share = script_share(text, language)
    if SCRIPT_OF[language] != "latin" or share == 0.0:
        return share
    counts = {lang: sum(w in vocab for w in words(text)) for lang, vocab in _FUNCTION_WORDS.items()}
    total = sum(counts.values())
    if total == 0:
        return share * 0.5  # too short to tell which Latin-script language it is
    return share * counts[language] / total


def repetition(tokens: list[str], n: int = 3) -> float:
    """Fraction of repeated n-grams (0 = none repeated, close to 1 = a loop)."""
    if len(tokens) < n + 1:
        return 0.0
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def _is_junk(char: str) -> bool:
    """Undecodable bytes (U+FFFD), control characters other than whitespace, unassigned code points."""
    return char == "\ufffd" or (
        unicodedata.category(char) in ("Cc", "Co", "Cn", "Cs") and not char.isspace()
    )


def is_degenerate(text: str) -> bool:
    """Empty, letter-less, mostly undecodable bytes, or a loop of the same few words or characters."""
    stripped = text.strip()
    letters = sum(_is_letter(c) for c in stripped)
    if letters < 3:
        return True
    if sum(_is_junk(c) for c in stripped) > 0.1 * len(stripped):
        return True
    tokens = words(stripped)
    if len(tokens) >= 8 and (len(set(tokens)) / len(tokens) < 0.25 or repetition(tokens) > 0.6):
        return True
    chars = stripped.lower()
    if len(chars) >= 12:
        grams = [chars[i : i + 3] for i in range(len(chars) - 2)]
        if len(set(grams)) / len(grams) < 0.3:  # e.g. "ab;ab;ab;ab;…": a loop too short to be words
            return True
    return False


def token_f1(candidate: str, reference: str) -> float:
    """Bag-of-words F1 between a response and a reference answer (as in SQuAD)."""
    cand, ref = Counter(words(candidate)), Counter(words(reference))
    overlap = sum((cand & ref).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(cand.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)
