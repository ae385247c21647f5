"""Huge and odd texts: a bounded prefix is tokenised, exactly; lone surrogates are one line (issue 21, 10)."""

from __future__ import annotations

import random

import pytest

from sgpt_qdrant import tokens
from sgpt_qdrant.checkpoint import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    tok, _ = load_tokenizer(tiny_model_dir)
    tok.model_max_length = int(1e30)
    return tok


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_huge_text_is_cut_as_the_whole_text_would_be_cut(tokenizer):
    rng = random.Random(3)
    words = ["alpha", "beta,", "gamma!!", "  delta", "\n\nepsilon", "zeta's", "1234", "éta", "θ"]
    text = " ".join(rng.choice(words) for _ in range(12_000))  # ~90k characters: over the bound
    assert len(text) > max(75 * tokens.PREFIX_CHARS_PER_TOKEN, tokens.PREFIX_MIN_CHARS)
    reference = tokenizer(text.strip(), add_special_tokens=False)["input_ids"][:75]
    for shift in range(0, 60, 5):  # the bound falls at different kinds of place in the text
        got = tokens.tokenize(tokenizer, [text[shift:]], 75)
        assert got.ids[0] == tokenizer(text[shift:].strip(), add_special_tokens=False)["input_ids"][:75]
        assert got.truncated == 1 and got.cut_at_least
    assert tokens.tokenize(tokenizer, [text], 75).ids[0] == reference


def test_a_20_mb_text_is_tokenised_by_a_bounded_prefix(tokenizer):
    """What the tokenizer is handed is bounded (not a timing: 20 MB whole took 28 s and 3.2 GB)."""
    text = "A sentence of a very long log line that goes on. " * 400_000  # 20 MB
    seen: list[int] = []

    def spy(batch, **kwargs):
        seen.extend(len(t) for t in ([batch] if isinstance(batch, str) else batch))
        return tokenizer(batch, **kwargs)

    got = tokens.tokenize(spy, [text], 75)
    assert seen and max(seen) <= max(75 * tokens.PREFIX_CHARS_PER_TOKEN, tokens.PREFIX_MIN_CHARS)
    assert got.ids[0] == tokenizer(text[:10_000].strip(), add_special_tokens=False)["input_ids"][:75]


def test_a_whitespace_free_run_falls_back_to_the_whole_text(tokenizer):
    text = "x" * 70_000
    assert tokens.tokenize(tokenizer, [text], 75).ids[0] == tokenizer(text, add_special_tokens=False)["input_ids"][:75]


def test_a_lone_surrogate_names_its_text_and_position():
    with pytest.raises(ValueError, match=r"texts\[1\]: a lone surrogate '\\udc80' at character 3"):
        tokens.check_texts(["fine", "abc\udc80def"])


def test_sgpt_eval_prints_valid_json_when_a_correlation_is_nan(tmp_path, monkeypatch):
    import json

    import numpy as np
    from click.testing import CliRunner

    import sgpt_qdrant.engine as engine
    from sgpt_qdrant.train.cli import eval_main

    class Constant:  # every sentence the same vector: the correlations are NaN
        def __init__(self, *args, **kwargs):
            pass

        def encode(self, texts):
            return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr(engine, "Encoder", Constant)
    path = tmp_path / "sts-dev.csv"
    path.write_text("".join(f"g\tf\t2012\t{i}\t{i % 5}.0\tFirst {i}.\tSecond {i}.\n" for i in range(6)))
    result = CliRunner().invoke(eval_main, ["model", "--sts", str(path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)[f"{path}:sts-dev"]  # strict JSON: a bare NaN would not parse
    json.loads(result.output, parse_constant=lambda c: pytest.fail(f"bare {c} in the output"))
    assert metrics["cosine_pearson"] is None
