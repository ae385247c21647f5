"""Where exported artifacts live, and the key that says when they are stale.

Never inside the Hugging Face cache (its snapshots may be read-only and are not ours): under
``$SGPT_CACHE_DIR`` or ``~/.cache/sgpt_qdrant``. The key hashes the weights themselves plus
the mode and the library versions, so a changed model or an upgraded exporter never reuses an
old file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn


def cache_root() -> Path:
    env = os.environ.get("SGPT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sgpt_qdrant"


def weights_key(model: nn.Module, *parts: str) -> str:
    """A short hash of every tensor in ``model.state_dict()`` (names, shapes, bytes) and ``parts``."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode() + b"\0")
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}\0".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
