"""Varied texts for parity tests: short, long (75+ tokens), non-ASCII, emoji, odd whitespace."""

from __future__ import annotations

import pytest

#: For the modules that embed varied_texts(): it holds over-long and empty texts on purpose, so
#: their warnings are expected there (the tests about those warnings assert them with pytest.warns).
EXPECTED_WARNINGS = [pytest.mark.filterwarnings("ignore::sgpt_qdrant.tokens.TruncationWarning"),
                     pytest.mark.filterwarnings("ignore::sgpt_qdrant.tokens.EmptyTextWarning")]

_BASE = [
    "Hello world",
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "   leading and trailing spaces   ",
    "\ttabs\tand\nnewlines\n",
    "Ünïcödé tëxt with àccents, ß and ø.",
    "日本語の文章も埋め込めます。",
    "Здравствуй, мир! Как дела?",
    "مرحبا بالعالم",
    "emoji 😀🚀🔥 in the middle 👍🏽 of text",
    "👨‍👩‍👧‍👦",
    "x",
    "?",
    "1234567890 3.14159 -42 1e10",
    "def f(x):\n    return x ** 2  # code",
    "<p>Some <b>HTML</b> &amp; entities</p>",
    "C'est la vie, n'est-ce pas ?",
    "Mixed 中文 and English and العربية together",
    "A" * 300,
    "日本語の文章も埋め込めます。" * 8,
    "🚀 " * 60,
    "Ünïcödé ümläüts ånd àccénts " * 10,
    "word " * 120,
    "The cat sat on the mat. " * 12,
    " ".join(f"token{i}" for i in range(90)),
    "Sentence embeddings map text to vectors so that similar meanings land close together; "
    "this one is long enough to pass seventy-five GPT-2 tokens once the tokenizer has split "
    "every word, comma, hyphenated-compound and number like 2022, 3.5 or 1,000,000 into pieces.",
    "a\u00a0non-breaking\u2009thin\u200bzero-width space",
    "\u3000ideographic space\u3000",
    "Ω≈ç√∫˜µ≤≥÷",
    "¡Hola! ¿Qué tal?",
    "I've got 99 problems",
    "NASA's James Webb Space Telescope",
    "e-mail: someone@example.com, url: https://example.com/a?b=c",
]


def varied_texts() -> list[str]:
    """At least 60 texts; the tail adds variations so lengths spread over 1..75+ tokens."""
    extra = [f"Sentence number {i} talks about {'many ' * (i % 9)}things." for i in range(20)]
    extra += [f"  {t}  " for t in _BASE[:10]]
    return _BASE + extra
