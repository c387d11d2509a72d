"""The fluency checks: fluent answers pass in every language; echoes, loops, empty answers and
answers in another language are caught and named."""

from __future__ import annotations

import pytest

from mixmerge.evaluation.fluency import fluency_problem, fluency_summary, fluency_warning

PROMPTS = {
    "en": "How do I bake bread at home?",
    "fr": "Comment faire du pain à la maison ?",
    "es": "¿Cómo hago pan en casa?",
    "hi": "मैं घर पर रोटी कैसे बनाऊं?",
    "ar": "كيف أخبز الخبز في المنزل؟",
    "ru": "Как испечь хлеб дома?",
}
ANSWERS = {
    "en": "Mix flour, water, yeast and salt, knead the dough for ten minutes, let it rise for an "
    "hour and bake it in a hot oven.",
    "fr": "Mélangez la farine, l'eau, la levure et le sel, pétrissez la pâte pendant dix minutes, "
    "laissez-la lever une heure et faites-la cuire dans un four chaud.",
    "es": "Mezcla la harina, el agua, la levadura y la sal, amasa la masa durante diez minutos, "
    "déjala reposar una hora y hornéala en un horno caliente.",
    "hi": "आटा, पानी, खमीर और नमक मिलाएं, दस मिनट तक गूंधें, एक घंटे के लिए रखें और गरम ओवन में पकाएं।",
    "ar": "اخلط الدقيق والماء والخميرة والملح، واعجن العجين عشر دقائق، واتركه يختمر ساعة ثم اخبزه في فرن ساخن.",
    "ru": "Смешайте муку, воду, дрожжи и соль, месите тесто десять минут, дайте ему подняться час и "
    "выпекайте в горячей духовке.",
}


@pytest.mark.parametrize("lang", list(PROMPTS))
def test_a_fluent_answer_passes(lang):
    assert fluency_problem(ANSWERS[lang], PROMPTS[lang], lang) is None


@pytest.mark.parametrize("lang", list(PROMPTS))
def test_an_echo_of_the_prompt_is_caught(lang):
    echo = f"{PROMPTS[lang]} {PROMPTS[lang]}"
    assert fluency_problem(echo, PROMPTS[lang], lang) in {"echo", "loop"}
    assert fluency_problem(PROMPTS[lang], PROMPTS[lang], lang) == "echo"


def test_an_answer_quoting_its_context_is_not_an_echo():
    prompt = (
        "Where did Hadrian's Wall run? Context: Hadrian's Wall was a defensive fortification in the "
        "Roman province of Britannia, begun in AD 122. It ran from Wallsend on the River Tyne in "
        "the east to Bowness-on-Solway in the west, and was garrisoned by auxiliary troops."
    )
    answer = "It ran from Wallsend on the River Tyne in the east to Bowness-on-Solway in the west."
    assert fluency_problem(answer, prompt, "en") is None
    assert fluency_problem(prompt + " It was long.", prompt, "en") == "echo"


@pytest.mark.parametrize("lang", list(PROMPTS))
def test_a_loop_is_caught(lang):
    first = " ".join(ANSWERS[lang].split()[:4])
    assert fluency_problem(" ".join([first] * 8), PROMPTS[lang], lang) == "loop"


@pytest.mark.parametrize(
    "lang,other",
    [("fr", "en"), ("es", "fr"), ("en", "es"), ("hi", "en"), ("ar", "ru"), ("ru", "en")],
)
def test_an_answer_in_another_language_is_caught(lang, other):
    assert fluency_problem(ANSWERS[other], PROMPTS[lang], lang) == "wrong_language"


def test_empty_and_byte_soup():
    assert fluency_problem("   ", "Hi", "en") == "empty"
    assert fluency_problem("\ufffd\ufffd\ufffd ab", "Hi", "en") == "loop"


def test_summary_flags_the_languages_below_the_threshold():
    rows = [
        {"language": "en", "prompt": PROMPTS["en"], "response": ANSWERS["en"]},
        {"language": "en", "prompt": PROMPTS["en"], "response": ANSWERS["en"]},
        {"language": "hi", "prompt": PROMPTS["hi"], "response": ANSWERS["hi"]},
        {"language": "hi", "prompt": PROMPTS["hi"], "response": PROMPTS["hi"]},
    ]
    summary = fluency_summary(rows, threshold=0.8)
    assert summary["per_language"]["en"]["share"] == 1.0
    assert summary["per_language"]["hi"] == {
        "n": 2,
        "fluent": 1,
        "empty": 0,
        "loop": 0,
        "echo": 1,
        "wrong_language": 0,
        "share": 0.5,
    }
    assert summary["below_threshold"] == ["hi"]
    line = fluency_warning(summary, "the model")
    assert line and "hi 50%" in line and "\n" not in line
    assert fluency_warning(fluency_summary(rows[:2]), "x") is None


@pytest.mark.parametrize("lang", list(PROMPTS))
def test_one_verbatim_repeat_of_a_sentence_is_the_start_of_a_loop(lang):
    """Readers count a sentence or list item repeated once as a loop; numbering is ignored."""
    sentence = ANSWERS[lang]
    assert fluency_problem(f"{sentence}\n{sentence}", PROMPTS[lang], lang) == "loop"
    item = " ".join(ANSWERS[lang].split()[:4])
    assert fluency_problem(f"1. {item}\n2. {item}", PROMPTS[lang], lang) == "loop"
    # Two different sentences, or a repeated two-word fragment, are not.
    assert fluency_problem(f"{sentence}\n{PROMPTS[lang]} ok", "Q", lang) is None
    two = " ".join(ANSWERS[lang].split()[:2])
    assert fluency_problem(f"{sentence}\n{two}.\n{two}.", PROMPTS[lang], lang) is None


@pytest.mark.parametrize("lang", ["hi", "ar", "ru"])
def test_a_clause_in_another_script_is_a_switch_of_language_but_a_loanword_is_not(lang):
    clause = "and then I went home"
    assert fluency_problem(f"{ANSWERS[lang]} {clause}", PROMPTS[lang], lang) == "wrong_language"
    assert fluency_problem(f"{ANSWERS[lang]} WhatsApp Google", PROMPTS[lang], lang) is None
    # Digits and punctuation between native words do not make a run.
    assert fluency_problem(f"{ANSWERS[lang]} 10 , 20 ; 30", PROMPTS[lang], lang) is None


def test_a_latin_answer_with_a_cyrillic_clause_switches_language():
    text = ANSWERS["fr"] + " и потом он ушёл домой"
    assert fluency_problem(text, PROMPTS["fr"], "fr") == "wrong_language"


def test_words_keep_vowel_signs_and_harakat():
    """Python's \\w leaves combining marks out; a word split at them is not a word."""
    from mixmerge.evaluation.text import words

    assert words("आटा, पानी, मैं घर पर रोटी") == ["आटा", "पानी", "मैं", "घर", "पर", "रोटी"]
    assert words("مَرْحَبًا بِكَ") == ["مَرْحَبًا", "بِكَ"]
    assert words("L'eau n'est pas chaude.") == ["l'eau", "n'est", "pas", "chaude"]
