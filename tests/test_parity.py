"""The forward pass equals independent references: sentence-transformers 6.x with the documented
Dense fix, and a hand-written computation on top of transformers' own GPTNeoModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from texts import EXPECTED_WARNINGS, varied_texts

from sgpt_qdrant import Encoder, load_checkpoint
from sgpt_qdrant.testing import write_random_checkpoint

pytestmark = EXPECTED_WARNINGS  # varied_texts() cuts and empties on purpose


def st_reference(model_dir, texts):
    """sentence-transformers 6.x, with module_input/output_name fixed on the per-token Dense layers."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    model = SentenceTransformer(str(model_dir), device="cpu")
    seen_pooling = False
    for module in model:
        seen_pooling |= type(module).__name__ == "Pooling"
        if isinstance(module, Dense) and not seen_pooling:
            module.module_input_name = module.module_output_name = "token_embeddings"
    return model.encode([t.strip() for t in texts], convert_to_numpy=True, batch_size=16)


def hand_reference(model_dir, texts):
    """transformers' GPTNeoModel (eager attention) + the Dense stack and mean pooling by hand."""
    from transformers import GPTNeoModel

    ckpt = load_checkpoint(str(model_dir))
    gpt = GPTNeoModel(ckpt.config).eval()
    gpt.load_state_dict(ckpt.transformer_state, strict=False)
    out = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all in the reference
            ids = ckpt.tokenizer(text.strip(), add_special_tokens=False)["input_ids"][:75]
            h = gpt(input_ids=torch.tensor([ids])).last_hidden_state[0]
            for layer in ckpt.dense:
                h = F.gelu(h @ layer.weight.T + layer.bias)  # exact erf GELU
            out.append(h.mean(0).numpy())
    return np.stack(out)


def test_texts_are_varied(tiny_encoder):
    texts = varied_texts()
    lengths = [len(x) for x in tiny_encoder.tokenizer([t.strip() for t in texts], add_special_tokens=False)["input_ids"]]
    assert len(texts) >= 50
    assert min(lengths) == 1 and sum(n > 75 for n in lengths) >= 5


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_matches_sentence_transformers(tiny_model_dir, tiny_encoder):
    texts = varied_texts()
    ours = tiny_encoder.encode(texts)
    ref = st_reference(tiny_model_dir, texts)
    assert ours.shape == ref.shape == (len(texts), 32)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.slow  # transformers' GPT-Neo, text by text; test_matches_sentence_transformers stays quick
def test_matches_hand_written_forward(tiny_model_dir, tiny_encoder):
    texts = varied_texts()
    np.testing.assert_allclose(tiny_encoder.encode(texts), hand_reference(tiny_model_dir, texts), atol=1e-5, rtol=0)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_truncates_to_max_seq_length_and_counts(tiny_model_dir):
    enc = Encoder(str(tiny_model_dir), device="cpu")
    long_text = "word " * 200
    head = enc.tokenizer.decode(enc.tokenizer(long_text.strip(), add_special_tokens=False)["input_ids"][:75])
    a, b = enc.encode([long_text, head])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert enc.truncated == 1


def test_empty_text_equals_the_reference_on_the_end_of_text_token(tiny_model_dir, tiny_encoder):
    """sentence-transformers has no defined vector for "" (zeros beside other texts, an error
    alone); ours is defined: the reference's vector for the lone <|endoftext|> token. The reference
    here is the hand-written one on transformers' GPTNeoModel (equal to sentence-transformers' in the
    two tests above), which spares the quick loop sentence-transformers' import."""
    with pytest.warns(UserWarning, match="empty or whitespace-only"):
        got = tiny_encoder.encode(["", "   "])
    ref = hand_reference(tiny_model_dir, ["<|endoftext|>"])[0]
    np.testing.assert_allclose(got, np.stack([ref, ref]), atol=1e-5, rtol=0)


FAMILY = {
    "dense-after-pooling": dict(dense_before_pooling=False, n_dense=3),
    "identity-no-bias": dict(activation="identity", bias=False, n_dense=2),
    "tanh": dict(activation="tanh", n_dense=1),
    "weightedmean": dict(pooling="weightedmean"),
    "lasttoken": dict(pooling="lasttoken", n_dense=2),
    "no-dense": dict(n_dense=0),
}


@pytest.mark.slow  # several full runs end to end (multi-second)
@pytest.mark.parametrize("name", FAMILY)
def test_sgpt_family_layouts_match_sentence_transformers(tmp_path, name):
    model_dir = write_random_checkpoint(tmp_path / name, seed=3, **FAMILY[name])
    texts = varied_texts()[:24]
    np.testing.assert_allclose(
        Encoder(str(model_dir), device="cpu").encode(texts), st_reference(model_dir, texts), atol=1e-5, rtol=0
    )


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_local_attention_window_beyond_75_tokens(tmp_path):
    """With max_length past the window, "local" layers must see only the last window_size tokens."""
    from transformers import GPTNeoModel

    model_dir = write_random_checkpoint(tmp_path / "m", n_dense=0, max_seq_length=120)
    ckpt = load_checkpoint(str(model_dir))
    ckpt.config.window_size = 16
    enc = Encoder(ckpt, device="cpu")
    gpt = GPTNeoModel(ckpt.config).eval()
    gpt.load_state_dict(ckpt.transformer_state, strict=False)
    text = "one two three four " * 40
    ids = enc.tokenize([text])[0]
    assert len(ids) == 120
    with torch.no_grad():
        ref = gpt(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(enc.encode([text])[0], ref, atol=1e-5)
