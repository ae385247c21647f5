"""oneDNN linear layers for CPUs: weights packed once, the activation fused into the matmul.

``nn.Linear`` on the CPU re-lays out its weight on every call and runs GELU as a separate pass
over memory. oneDNN's ``_linear_pointwise`` takes a weight packed once for the CPU's kernels and
applies GELU (tanh or erf) as a post-op, which is what ``torch.compile`` emits for CPUs, without
its warm-up. The ops are internal to PyTorch, so :func:`pack` checks them against ``F.linear``
on this machine first and returns ``None`` where they are missing or disagree.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .. import precision

log = logging.getLogger(__name__)

#: Row count the packed layout is tuned for (a typical CPU batch: 4096-token budget).
_ROWS_HINT = 4096

#: Row counts a matmul runs at per doubling of the rows (see :func:`padded_rows`).
_STEPS_PER_OCTAVE = 8


def padded_rows(rows: int) -> int:
    """The row count a matmul of ``rows`` rows runs at: one of a few sizes (at least 8, then
    ``_STEPS_PER_OCTAVE`` evenly spaced sizes per doubling, so at most 12.5 % more rows).

    Why: the runtime hands oneDNN the real tokens of a batch, any count from 1 to the token
    budget, and oneDNN builds and keeps kernels and buffers per input shape: free shapes grew
    the process without bound (measured: +30 MB per 1,280 texts of varied length with a 2-layer
    model; 2 GB peak at 140k ingested chunks). A few dozen sizes keep it flat.
    """
    if rows <= 8:
        return 8
    step = 1 << max(0, rows.bit_length() - 1 - _STEPS_PER_OCTAVE.bit_length() + 1)
    return -(-rows // step) * step


def available(dtype: torch.dtype) -> bool:
    """oneDNN linear ops present, and (for bf16) run natively by this CPU."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    if dtype == torch.bfloat16:
        return precision.cpu_has_native_bf16()
    return dtype == torch.float32


class PackedLinear(nn.Module):
    """``activation(x @ W.T + b)`` with W packed for oneDNN; ``activation`` none or gelu."""

    def __init__(self, linear: nn.Linear, gelu: str | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.out_features = weight.shape[0]
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, _ROWS_HINT))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        # oneDNN names: attr "gelu" with algorithm "tanh" or "none" (erf).
        self.attr, self.algorithm = ("none", "") if gelu is None else ("gelu", "tanh" if gelu == "tanh" else "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        n = rows.shape[0]
        pad = padded_rows(n) - n
        if pad:  # zero rows: each output row depends on its own input row only, so they are cut off exactly
            rows = F.pad(rows, (0, 0, 0, pad))
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, self.attr, [], self.algorithm)
        return (y[:n] if pad else y).reshape(*shape[:-1], self.out_features)


def _gelu_kind(act: nn.Module) -> str | None:
    if isinstance(act, nn.GELU):
        return act.approximate  # "tanh" or "none" (erf)
    return None


def pack(model: nn.Module, dtype: torch.dtype) -> nn.Module | None:
    """Fuse q/k/v, then swap every Linear (+ a GELU after it) for :class:`PackedLinear`, in place.

    Returns ``None`` (model untouched) where oneDNN cannot run ``dtype`` natively or its result
    differs from ``F.linear`` beyond rounding on a probe, so callers fall back to eager.
    """
    if not available(dtype) or not _probe(dtype):
        return None
    from ..model import Dense, MLP
    from .fuse import fuse_qkv

    with torch.inference_mode(False), torch.no_grad():
        fuse_qkv(model)
        for module in list(model.modules()):
            if isinstance(module, MLP) and _gelu_kind(module.act) is not None:
                module.c_fc = PackedLinear(module.c_fc, _gelu_kind(module.act))
                module.act = nn.Identity()
                module.c_proj = PackedLinear(module.c_proj)
            elif isinstance(module, Dense):
                kind = _gelu_kind(module.activation)
                module.linear = PackedLinear(module.linear, kind)
                if kind is not None:
                    module.activation = nn.Identity()
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if type(child) is nn.Linear:
                    setattr(module, name, PackedLinear(child))
    return model


def _probe(dtype: torch.dtype) -> bool:
    """The packed op equals ``F.linear`` (+GELU) here, to the dtype's rounding."""
    try:
        gen = torch.Generator().manual_seed(0)
        lin = nn.Linear(64, 48).to(dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(48, 64, generator=gen) * 0.1)
        x = torch.randn(7, 5, 64, generator=gen).to(dtype)
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        with torch.inference_mode():
            for kind in (None, "tanh", "none"):
                want = F.linear(x, lin.weight, lin.bias).float()
                if kind is not None:
                    want = F.gelu(want, approximate=kind)
                got = PackedLinear(lin, kind)(x).float()
                if got.shape != want.shape or not torch.allclose(got, want, atol=tol, rtol=tol):
                    log.warning("oneDNN packed linear disagrees with F.linear (%s); not used", dtype)
                    return False
        return True
    except (RuntimeError, AttributeError, TypeError) as exc:
        log.warning("oneDNN packed linear unavailable (%s); not used", exc)
        return False
