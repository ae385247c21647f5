"""One rule for which checkpoint is used: explicit argument > $SGPT_MODEL > the published Hub id,
in Python (Encoder, SGPTEmbedding, SGPTNodeParser) as on the command line; and the Hub error
offline names the ways out (--model, SGPT_MODEL, the random stand-in)."""

from __future__ import annotations

import pytest

from sgpt_qdrant import checkpoint as ckpt

HUB_ID = "Muennighoff/SGPT-125M-mean-nli-linearthenpool5"


def test_the_rule_explicit_then_env_then_hub_id(monkeypatch):
    monkeypatch.delenv("SGPT_MODEL", raising=False)
    assert ckpt.resolve_model_name() == HUB_ID
    assert ckpt.resolve_model_name("") == HUB_ID
    monkeypatch.setenv("SGPT_MODEL", " some/folder \n")
    assert ckpt.resolve_model_name() == "some/folder"
    assert ckpt.resolve_model_name(None) == "some/folder"
    assert ckpt.resolve_model_name("explicit/one") == "explicit/one"
    monkeypatch.setenv("SGPT_MODEL", "")
    assert ckpt.resolve_model_name() == HUB_ID


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_encoder_embedding_and_node_parser_read_sgpt_model(monkeypatch, tiny_model_dir):
    from sgpt_qdrant import Encoder, SGPTEmbedding, SGPTNodeParser

    monkeypatch.setenv("SGPT_MODEL", str(tiny_model_dir))
    encoder = Encoder(device="cpu")
    assert encoder.dimension == 32 and encoder.model_name == str(tiny_model_dir)
    embedding = SGPTEmbedding(device="cpu")
    assert embedding.model_name == str(tiny_model_dir) and embedding.dimension == 32
    restored = SGPTEmbedding.from_dict(embedding.to_dict())  # the resolved name is what is saved
    assert restored.model_name == str(tiny_model_dir)
    parser = SGPTNodeParser()
    assert parser.model_name == str(tiny_model_dir)


def test_an_explicit_model_wins_over_sgpt_model(monkeypatch, tiny_model_dir, tmp_path):
    from sgpt_qdrant import Encoder

    monkeypatch.setenv("SGPT_MODEL", str(tmp_path / "no-such-model"))
    assert Encoder(str(tiny_model_dir), device="cpu").dimension == 32
    with pytest.raises(ckpt.CheckpointError, match="no-such-model"):
        Encoder(device="cpu")


def test_offline_hub_error_names_the_ways_out(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("SGPT_MODEL", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.resolve()
    message = str(info.value)
    assert "\n" not in message and HUB_ID in message
    for way_out in ("--model", "SGPT_MODEL", "python -m sgpt_qdrant.testing", "[standin]"):
        assert way_out in message, way_out


def test_standin_command_writes_a_loadable_model_and_refuses_to_overwrite(tmp_path, capsys):
    from sgpt_qdrant.testing import main

    assert main([str(tmp_path / "m")]) == 0
    root, dim, max_len = ckpt.peek(tmp_path / "m")
    assert (dim, max_len) == (32, 75)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "m")])
    assert info.value.code == 2 and "not empty" in capsys.readouterr().err
