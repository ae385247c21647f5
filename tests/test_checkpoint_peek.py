"""checkpoint.peek (config files only) and the node parser's tokenizer follow modules.json as load does."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from sgpt_qdrant import CheckpointError, load_checkpoint
from sgpt_qdrant.checkpoint import peek


@pytest.fixture
def transformer_in_a_subfolder(tiny_model_dir, tmp_path):
    """The tiny model with its Transformer module in 0_Transformer/ and no sentence_bert_config.json,
    so only modules.json says where the length limit is (max_position_embeddings = 128 there)."""
    root = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (root / "0_Transformer").mkdir()
    for name in ("config.json", "pytorch_model.bin"):
        (root / name).rename(root / "0_Transformer" / name)
    modules = json.loads((root / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "sentence_bert_config.json").unlink()
    return root


def test_peek_reads_the_shape_from_the_config_files(tiny_model_dir):
    assert peek(tiny_model_dir) == (tiny_model_dir, 32, 75)  # SHAPE_TINY hidden 32, the recipe's 75 tokens


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_peek_and_the_node_parser_follow_modules_json(transformer_in_a_subfolder):
    pytest.importorskip("llama_index.core")
    from sgpt_qdrant.node_parser import model_tokenizer

    root = transformer_in_a_subfolder
    assert load_checkpoint(root).max_seq_length == 128
    assert peek(root) == (root, 32, 128)
    tokenizer, limit = model_tokenizer(str(root))
    assert limit == 128 and tokenizer("hello world", add_special_tokens=False)["input_ids"] == [31373, 995]


def test_peek_refuses_a_module_load_refuses(tiny_model_dir, tmp_path):
    root = shutil.copytree(tiny_model_dir, tmp_path / "model")
    modules = json.loads((root / "modules.json").read_text())
    modules.append({"idx": 7, "name": "7", "path": "", "type": "sentence_transformers.models.CNN"})
    (root / "modules.json").write_text(json.dumps(modules))
    for read in (peek, load_checkpoint):
        with pytest.raises(CheckpointError, match=r"modules.json: module type .*CNN.* is not supported"):
            read(root)


@pytest.mark.slow  # a tokenizer load and a pickle round trip: about a second
def test_lazy_tokenizer_loads_at_its_first_use_and_then_is_the_tokenizer(tiny_model_dir):
    from sgpt_qdrant.checkpoint import LazyTokenizer

    lazy = LazyTokenizer(tiny_model_dir)
    lazy.model_max_length = 10**30  # set before the load: set on the tokenizer when it loads
    assert not lazy.loaded
    assert lazy("hello world", add_special_tokens=False)["input_ids"] == [31373, 995]  # GPT-2's own ids
    assert lazy.loaded and lazy.get().model_max_length == 10**30 and lazy.padding_side == "right"
    assert len(lazy) == 50257  # GPT-2's vocabulary
    shipped = pickle.loads(pickle.dumps(lazy))  # to a Ray worker: the tokenizer itself, no model folder needed
    assert not isinstance(shipped, LazyTokenizer)
    assert shipped("hello world", add_special_tokens=False)["input_ids"] == [31373, 995]


def test_lazy_tokenizer_refuses_a_folder_without_one_at_once_and_a_damaged_one_at_each_use(
        tiny_model_dir, tmp_path, monkeypatch):
    from sgpt_qdrant import checkpoint
    from sgpt_qdrant.checkpoint import LazyTokenizer

    root = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (root / "tokenizer.json").write_text("{broken")
    loads = []
    real = checkpoint.load_tokenizer
    monkeypatch.setattr(checkpoint, "load_tokenizer", lambda folder: loads.append(folder) or real(folder))
    lazy = LazyTokenizer(root)  # files present: nothing read yet
    for _ in range(2):
        with pytest.raises(CheckpointError, match=r"tokenizer\.json: cannot be read as a GPT-2 tokenizer"):
            lazy("hello")
    assert len(loads) == 1  # the second use repeats the first answer, it does not parse the file again
    for name in ("tokenizer.json", "vocab.json"):
        (root / name).unlink()
    with pytest.raises(CheckpointError, match="missing file tokenizer.json"):
        LazyTokenizer(root)
