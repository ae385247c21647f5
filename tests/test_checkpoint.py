"""The checkpoint reader/writer: the published Hub layout, and clear errors for what we cannot run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sgpt_qdrant import CheckpointError, Encoder, load_checkpoint, save_checkpoint

GELU = "torch.nn.modules.activation.GELU"


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_layout_is_the_published_one(tiny_model_dir):
    """Field for field what SGPT_REFERENCE.md documents for the Hub repository."""
    modules = read(tiny_model_dir / "modules.json")
    assert [(m["idx"], m["path"], m["type"]) for m in modules] == [
        (0, "", "sentence_transformers.models.Transformer"),
        *[(i, f"{i}_Dense", "sentence_transformers.models.Dense") for i in range(1, 6)],
        (6, "6_Pooling", "sentence_transformers.models.Pooling"),
    ]
    for i in range(1, 6):
        assert read(tiny_model_dir / f"{i}_Dense" / "config.json") == {
            "in_features": 32, "out_features": 32, "bias": True,
            "activation_function": GELU, "key_name": "token_embeddings",
        }
        weights = torch.load(tiny_model_dir / f"{i}_Dense" / "pytorch_model.bin", weights_only=True)
        assert set(weights) == {"linear.weight", "linear.bias"}
    pooling = read(tiny_model_dir / "6_Pooling" / "config.json")
    assert pooling["pooling_mode_mean_tokens"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    assert read(tiny_model_dir / "sentence_bert_config.json") == {"max_seq_length": 75, "do_lower_case": False}
    config = read(tiny_model_dir / "config.json")
    assert config["model_type"] == "gpt_neo" and config["attention_types"] == [[["global", "local"], 1]]
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tiny_model_dir / name).is_file()
    assert "pad_token" not in read(tiny_model_dir / "tokenizer_config.json")
    assert read(tiny_model_dir / "special_tokens_map.json")["pad_token"] == "<|endoftext|>"


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_tokenizer_is_real_gpt2_bpe_with_eos_padding(tiny_model_dir):
    ckpt = load_checkpoint(str(tiny_model_dir))
    assert ckpt.tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert ckpt.tokenizer("Hello world")["input_ids"] == [15496, 995]  # no BOS/EOS added
    assert ckpt.pad_id == 50256 and ckpt.max_seq_length == 75 and ckpt.pooling == "mean"


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_pad_falls_back_to_endoftext(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (copy / "special_tokens_map.json").unlink()
    assert load_checkpoint(str(copy)).pad_id == 50256


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_save_load_round_trip_gives_same_vectors(tiny_model_dir, tiny_encoder, tmp_path):
    out = save_checkpoint(load_checkpoint(str(tiny_model_dir)), tmp_path / "copy")
    texts = ["a round trip", "through the writer and the reader"]
    np.testing.assert_array_equal(Encoder(str(out), device="cpu").encode(texts), tiny_encoder.encode(texts))


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_safetensors_weights_are_read(tiny_model_dir, tmp_path):
    from safetensors.torch import save_file

    copy = shutil.copytree(tiny_model_dir, tmp_path / "m")
    state = torch.load(copy / "pytorch_model.bin", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, copy / "model.safetensors")
    (copy / "pytorch_model.bin").unlink()
    ref = load_checkpoint(str(tiny_model_dir)).transformer_state
    got = load_checkpoint(str(copy)).transformer_state
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def broken(tiny_model_dir, tmp_path, edit):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    edit(copy)
    return copy


def edit_json(path, **changes):
    data = read(path)
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: (d / "3_Dense" / "config.json").unlink(), r"3_Dense/config\.json: missing file"),
        (lambda d: (d / "pytorch_model.bin").unlink(), r"missing file model\.safetensors or pytorch_model\.bin"),
        (lambda d: edit_json(d / "2_Dense" / "config.json", out_features=16), r"2_Dense/config\.json: fields out_features"),
        (lambda d: edit_json(d / "6_Pooling" / "config.json", pooling_mode_mean_tokens=False,
                             pooling_mode_cls_token=True), r"6_Pooling/config\.json: pooling mode"),
        (lambda d: edit_json(d / "6_Pooling" / "config.json", pooling_mode_mean_tokens=False), r"pooling mode none"),
        (lambda d: edit_json(d / "1_Dense" / "config.json", activation_function="torch.nn.modules.activation.SiLU"),
         r"1_Dense/config\.json: field activation_function"),
        (lambda d: edit_json(d / "4_Dense" / "config.json", key_name="sentence_embedding"),
         r"4_Dense/config\.json: field key_name"),
        (lambda d: edit_json(d / "config.json", model_type="llama"), r"config\.json: field model_type"),
        (lambda d: edit_json(d / "sentence_bert_config.json", max_seq_length=4096), r"max_seq_length 4096 exceeds"),
        (lambda d: (d / "modules.json").write_text("{not json"), r"modules\.json: not valid JSON"),
    ],
    ids=["missing-dense-config", "missing-weights", "dense-shape", "cls-pooling", "no-pooling",
         "activation", "key-name", "model-type", "max-seq-length", "bad-json"],
)
def test_unrunnable_checkpoints_fail_clearly(tiny_model_dir, tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(str(broken(tiny_model_dir, tmp_path, edit)))


def nan_in(path, key):
    state = torch.load(path, weights_only=True)
    state[key] = state[key].clone()
    state[key].view(-1)[3] = float("nan")
    torch.save(state, path)


def corrupt_safetensors(d):
    (d / "pytorch_model.bin").unlink()
    (d / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{not a header")


@pytest.mark.parametrize(
    "edit, message",
    [
        # the config is compared with the weights before anything is built: no layer-by-layer
        # allocation of 100,000 layers until memory runs out
        (lambda d: edit_json(d / "config.json", num_layers=100_000, attention_types=[[["global", "local"], 50_000]],
                             attention_layers=["global", "local"] * 50_000),
         r"config\.json: num_layers 100000 but pytorch_model\.bin holds 2 layers"),
        (lambda d: edit_json(d / "config.json", num_heads=0), r"config\.json: field num_heads 0 must be a positive divisor"),
        (lambda d: edit_json(d / "config.json", num_heads=5), r"config\.json: field num_heads 5 .* hidden_size 32"),
        (lambda d: edit_json(d / "config.json", hidden_size=64), r"pytorch_model\.bin: wte\.weight is \(50257, 32\)"),
        (lambda d: edit_json(d / "config.json", attention_layers=["global"]), r"config\.json: .*attention_layers"),
        (lambda d: d.joinpath("modules.json").write_text(json.dumps(
            [{**m, "path": "../../outside"} if m["idx"] == 3 else m for m in read(d / "modules.json")])),
         r"modules\.json: module path '\.\./\.\./outside' leaves the model folder"),
        (lambda d: d.joinpath("modules.json").write_text(json.dumps(
            [{**m, "path": "/etc"} if m["idx"] == 3 else m for m in read(d / "modules.json")])),
         r"modules\.json: module path '/etc' leaves the model folder"),
        (lambda d: (d / "modules.json").write_text('{"idx": 0}'), r"modules\.json: expected a list of modules"),
        (corrupt_safetensors, r"model\.safetensors: not a valid safetensors file"),
        (lambda d: (d / "tokenizer.json").write_text("{broken"), r"tokenizer\.json: cannot be read"),
        (lambda d: nan_in(d / "pytorch_model.bin", "h.1.mlp.c_fc.weight"),
         r"pytorch_model\.bin: tensor h\.1\.mlp\.c_fc\.weight has NaN or infinite values"),
        (lambda d: nan_in(d / "2_Dense" / "pytorch_model.bin", "linear.bias"),
         r"2_Dense/pytorch_model\.bin: tensor linear\.bias has NaN or infinite values"),
    ],
    ids=["num-layers-bomb", "zero-heads", "heads-not-dividing", "hidden-size", "attention-types", "path-escape",
         "path-absolute", "modules-not-list", "corrupt-safetensors", "corrupt-tokenizer", "nan-transformer",
         "nan-dense"],
)
def test_hostile_checkpoints_fail_in_one_line(tiny_model_dir, tmp_path, edit, message):
    """Issue 13 item 7: each names the file and what is wrong, before any model is built."""
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(str(broken(tiny_model_dir, tmp_path, edit)))
    assert "\n" not in str(err.value)


def test_pickled_code_is_refused(tiny_model_dir, tmp_path):
    """weights_only=True: a pickle that would run code is an error, not an execution."""

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    copy = broken(tiny_model_dir, tmp_path, lambda d: torch.save({"linear.weight": Evil()}, d / "1_Dense" / "pytorch_model.bin"))
    with pytest.raises(CheckpointError, match=r"1_Dense/pytorch_model\.bin: cannot be read safely"):
        load_checkpoint(str(copy))


def test_missing_directory_is_not_mistaken_for_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="no such model directory"):
        load_checkpoint(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_importing_the_reader_loads_no_torch_transformers_or_llama_index():
    """What the ingest CLI's --help pays for the core: the checkpoint module, nothing heavy."""
    code = ("import sys, sgpt_qdrant.checkpoint\n"
            "print(sorted(m for m in ('torch', 'transformers', 'llama_index') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_uncached_hub_id_offline_fails_fast_with_advice(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = ("from sgpt_qdrant import load_checkpoint\n"
            "load_checkpoint('Muennighoff/SGPT-125M-mean-nli-linearthenpool5')")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "CheckpointError" in last and "local copy" in last and "SGPT-125M" in last
