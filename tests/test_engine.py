"""The batching engine: token-budget batches, caller's order, batch invariance, OOM splitting."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from texts import EXPECTED_WARNINGS, varied_texts

from sgpt_qdrant import Encoder
from sgpt_qdrant.tokens import plan_batches, tokenize, tokenize_and_pad

pytestmark = EXPECTED_WARNINGS  # varied_texts() cuts and empties on purpose


def test_token_budget_batches_by_hand():
    lengths = [3, 10, 1, 10, 5, 2]
    # longest first: 10,10 (2*10 = 20) | 5,3,2,1 (4*5 = 20)
    assert plan_batches(lengths, token_budget=20, max_batch=8) == [[1, 3], [4, 0, 5, 2]]
    # budget 19: 10 | 10 | 5,3,2 (3*5 = 15; a 4th makes 20) | 1
    assert plan_batches(lengths, token_budget=19, max_batch=8) == [[1], [3], [4, 0, 5], [2]]
    assert plan_batches(lengths, token_budget=1000, max_batch=2) == [[1, 3], [4, 0], [5, 2]]
    assert plan_batches([], 10, 4) == []
    # a text longer than the budget still gets a batch of its own
    assert plan_batches([50, 1], token_budget=10, max_batch=4) == [[0], [1]]


def test_batches_cover_every_index_once_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(0, 75) for _ in range(500)]
    batches = plan_batches(lengths, token_budget=600, max_batch=64)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= 64 and (len(batch) == 1 or len(batch) * width <= 600)


@pytest.mark.slow  # one encode per text, three budgets; test_precision's fp32 batch invariance stays quick
def test_order_restored_and_batch_invariant(tiny_model_dir, tiny_encoder):
    texts = varied_texts()
    alone = np.stack([tiny_encoder.encode([t])[0] for t in texts])
    rng = random.Random(1)
    for budget in (16, 300, 100_000):
        enc = Encoder(tiny_encoder.checkpoint, device="cpu", token_budget=budget)
        shuffled = texts[:]
        rng.shuffle(shuffled)
        got = enc.encode(shuffled)
        for text, vec in zip(shuffled, got):
            np.testing.assert_allclose(vec, alone[texts.index(text)], atol=2e-6, rtol=0)


def test_same_text_in_different_company(tiny_encoder):
    target = "The same sentence, embedded in different batches."
    a = tiny_encoder.encode([target])[0]
    b = tiny_encoder.encode(["x", target, "word " * 100])[1]
    c = tiny_encoder.encode([target] * 7)
    np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(c, np.tile(a, (7, 1)), atol=2e-6)


def test_out_of_memory_splits_the_batch_and_goes_on(tiny_encoder, monkeypatch):
    enc = Encoder(tiny_encoder.checkpoint, device="cpu", token_budget=100_000, backend="eager")
    texts = varied_texts()
    expected = tiny_encoder.encode(texts)
    real_forward = enc.model.forward
    sizes = []

    def flaky_forward(input_ids, mask):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 5:
            raise torch.OutOfMemoryError("simulated")
        return real_forward(input_ids, mask)

    monkeypatch.setattr(enc.model, "forward", flaky_forward)
    np.testing.assert_allclose(enc.encode(texts), expected, atol=2e-6)
    assert sizes[0] == len(texts) and max(s for s in sizes if s <= 5) <= 5
    assert enc.token_budget < 100_000  # later batches start smaller


def test_out_of_memory_on_a_single_text_is_raised(tiny_encoder, monkeypatch):
    enc = Encoder(tiny_encoder.checkpoint, device="cpu", backend="eager")

    def always_oom(input_ids, mask):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(enc.model, "forward", always_oom)
    with pytest.raises(torch.OutOfMemoryError):
        enc.encode(["one text"])


def test_edge_inputs(tiny_encoder):
    assert tiny_encoder.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match="list of texts"):
        tiny_encoder.encode("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, got NoneType"):
        tiny_encoder.encode(["fine", None])
    with pytest.raises(TypeError, match=r"texts\[2\]: expected str, got int"):
        tiny_encoder.encode(["fine", "also fine", 7])


def test_empty_text_is_the_end_of_text_token_with_a_warning(tiny_encoder):
    """No silent zero vector (cosine with it is NaN): "" and whitespace embed as EOS alone."""
    with pytest.warns(UserWarning, match=r"2 empty or whitespace-only texts \(texts\[0\], texts\[2\]\)"):
        got = tiny_encoder.encode(["", "words", " \t\n "])
    eos = tiny_encoder.encode([tiny_encoder.tokenizer.eos_token])[0]  # the literal token text
    assert np.linalg.norm(got[0]) > 0 and np.isfinite(got).all()
    np.testing.assert_allclose(got[0], eos, atol=2e-6)
    np.testing.assert_allclose(got[2], eos, atol=2e-6)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_max_length_argument_is_checked(tiny_model_dir):
    with pytest.raises(ValueError, match="max_length"):
        Encoder(str(tiny_model_dir), device="cpu", max_length=100_000)
    short = Encoder(str(tiny_model_dir), device="cpu", max_length=4)
    assert short.tokenize(["one two three four five six"]) == [short.tokenize(["one two three four"])[0]]


def test_tokenize_and_pad_for_the_trainer_by_hand(tiny_encoder):
    tok = tiny_encoder.tokenizer  # GPT-2 BPE: "Hello" 15496, " world" 995; pad 50256
    input_ids, mask = tokenize_and_pad(tok, ["  Hello world\n", "Hello"], max_length=75, pad_id=50256)
    assert input_ids.tolist() == [[15496, 995], [15496, 50256]]
    assert mask.tolist() == [[1, 1], [1, 0]]
    input_ids, mask = tokenize_and_pad(tok, ["Hello world", "Hello"], max_length=1, pad_id=50256)
    assert input_ids.tolist() == [[15496], [15496]] and mask.tolist() == [[1], [1]]
    out = tokenize(tok, ["Hello world", "", " ", "Hello"], max_length=1)
    assert out.truncated == 1 and out.empty == [1, 2] and out.ids == [[15496], [], [], [15496]]
