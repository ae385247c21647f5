"""One q/k/v projection instead of three: the same weights, concatenated.

GPT-Neo projects q, k and v with three bias-free (dim x dim) matmuls that read the same input.
One (dim x 3*dim) matmul gives the same columns (each output is the same dot product) in one
pass over the input and one larger, more efficient GEMM; for ONNX int8 it also quantises the
input once instead of three times. Applied to copies made for the fast paths only.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import Attention


class FusedQKVAttention(nn.Module):
    def __init__(self, attention: Attention) -> None:
        super().__init__()
        dim = attention.q_proj.in_features
        self.qkv = nn.Linear(dim, 3 * dim, bias=False).to(attention.q_proj.weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([attention.q_proj.weight, attention.k_proj.weight,
                                             attention.v_proj.weight], dim=0))
        del attention.q_proj, attention.k_proj, attention.v_proj  # this copy no longer needs them
        self.attention = attention  # heads, window, out_proj and the attention math itself

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)
        return self.attention.attend(q, k, v)


def fuse_qkv(model: nn.Module) -> nn.Module:
    """Replace every GPT-Neo attention in ``model`` (a copy) by :class:`FusedQKVAttention`."""
    for module in list(model.modules()):
        child = getattr(module, "attention", None)
        if isinstance(child, Attention):
            module.attention = FusedQKVAttention(child)
    return model
