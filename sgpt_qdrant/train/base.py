"""The starting model: a plain GPT-Neo (Hub id or local Hugging Face directory) plus new Dense
layers, exactly as the recipe set it up; or an existing SGPT directory to train further."""

from __future__ import annotations

import logging
import os

import torch

from .. import checkpoint as ckpt
from .config import DEFAULT_BASE

log = logging.getLogger(__name__)


def new_dense_layers(width: int, n: int, seed: int) -> list[ckpt.DenseLayer]:
    """``n`` × ``nn.Linear(width, width)`` with PyTorch's default init, GELU, before pooling."""
    layers = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(n):
            linear = torch.nn.Linear(width, width)
            layers.append(ckpt.DenseLayer(linear.weight.detach().clone(), linear.bias.detach().clone(),
                                          "gelu", before_pooling=True))
    return layers


def start_checkpoint(
    model: str | os.PathLike[str] = DEFAULT_BASE,
    n_dense: int = 5,
    max_seq_length: int = 75,
    pooling: str = "mean",
    seed: int = 42,
) -> ckpt.Checkpoint:
    """GPT-Neo + ``n_dense`` Dense layers + pooling, pad token = eos.

    A directory (or Hub repo) with a ``modules.json`` is already an SGPT model: it is loaded as
    it is and ``n_dense``/``pooling`` are ignored.
    """
    root = ckpt.resolve(model)
    if (root / "modules.json").is_file():
        log.info("%s is a sentence-transformers layout; training its own Dense layers further", model)
        checkpoint = ckpt.load(root)
        checkpoint.max_seq_length = min(max_seq_length, checkpoint.config.max_position_embeddings)
        return checkpoint
    if n_dense < 0:
        raise ValueError(f"--dense: {n_dense} must be 0 or more")
    if pooling not in ("mean", "weightedmean", "lasttoken"):
        raise ValueError(f"--pooling: {pooling!r} is not one of mean, weightedmean, lasttoken")
    config, state = ckpt.read_gpt_neo(root)
    if not 0 < max_seq_length <= config.max_position_embeddings:
        raise ValueError(f"--max-seq-length: {max_seq_length} must be in 1..{config.max_position_embeddings}")
    tokenizer, _ = ckpt.load_tokenizer(root)
    if tokenizer.eos_token is None:
        raise ckpt.CheckpointError(f"{root}: the tokenizer has no eos token to pad with")
    tokenizer.pad_token = tokenizer.eos_token
    dense = new_dense_layers(int(config.hidden_size), n_dense, seed)
    return ckpt.Checkpoint(config, state, dense, pooling, max_seq_length, tokenizer,
                           int(tokenizer.pad_token_id), normalize=False, source=str(model))
