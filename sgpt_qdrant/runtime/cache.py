"""The key that says when an exported artifact is stale; where they live is :mod:`..user_cache`.

The key hashes the weights themselves plus the mode and the library versions, so a changed
model or an upgraded exporter never reuses an old file.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def versions(*libraries: tuple[str, str]) -> str:
    """``torch=2.x;label=version;...`` for the ``(label, module)`` pairs; ``-`` for one not installed."""
    import importlib

    parts = [f"torch={torch.__version__}"]
    for label, module in libraries:
        try:
            version = importlib.import_module(module).__version__
        except ImportError:
            version = "-"
        parts.append(f"{label}={version}")
    return ";".join(parts)


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
