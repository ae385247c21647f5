"""Execution paths for the SGPT forward pass, picked per device and precision mode.

Modes (what the user asks for): ``fp32`` (exact to the reference), ``bf16``, ``fp16`` (GPUs
only) and ``int8`` (CPUs only, through ONNX Runtime). Backends (how it runs):

==========  =======================================================================
``eager``   the plain :class:`~sgpt_qdrant.model.SGPTModel` (any device, any dtype)
``onednn``  CPU fp32/bf16: oneDNN linear layers with packed weights and fused GELU
``onnx``    CPU fp32/int8: ONNX Runtime on an exported (and for int8 quantised) graph
==========  =======================================================================

``backend="auto"`` takes the fastest that works here: measured on a 2-core AVX512-BF16 CPU,
oneDNN beats ONNX Runtime for fp32 and bf16 and needs no warm-up; int8 needs ONNX Runtime.
Every fast path is checked against eager on a probe batch when it is built; if it is
unavailable or disagrees, the encoder warns and runs eager, so a vector is never wrong.

:func:`build` returns the executor that runs padded batches: :class:`~.execute.Sequential`
(one batch after another, halving a batch on out-of-memory) on CPUs and MPS, the persistent
:class:`~.cuda.DevicePool` (one worker and model copy per GPU) on CUDA. Modes live in
:mod:`sgpt_qdrant.precision`.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Union

import torch
from torch import nn

from .. import precision
from . import onednn, ort
from .cuda import DevicePool
from .cuda import token_budget as cuda_token_budget  # noqa: F401  (for the encoder)
from .execute import Sequential

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "onednn", "onnx")


Executor = Union[Sequential, DevicePool]


def build(model: nn.Module, mode: str, devices: Sequence[torch.device], backend: str = "auto",
          usable_length: bool = True, on_oom: Callable[[], None] | None = None) -> Executor:
    """The executor for ``model`` (already on ``devices[0]`` in ``mode``'s dtype) on the fastest path here.

    CUDA gets the persistent pool (one worker and model copy per GPU); other devices run one
    batch after another. ``usable_length`` is False where texts may be longer than a
    local-attention window: the exported graph only holds the causal branch, so ONNX is not
    used then. ``on_oom`` is told each time a batch had to be split for memory.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    start = time.perf_counter()
    device = devices[0]
    wanted = _choose(mode, device, backend)
    if device.type == "cuda":
        pool = DevicePool(model, devices, on_oom=on_oom, backend="eager")
        pool.warmup_seconds = time.perf_counter() - start
        return pool
    forward, chosen = None, wanted
    if wanted == "onednn":
        forward = onednn.pack(copy.deepcopy(model), precision.MODES[mode])
        if forward is None:
            _fallback(f"oneDNN {mode} linear layers are not available on this CPU")
    elif wanted == "onnx":
        forward = _build_onnx(model, mode, usable_length)
    if forward is not None and not _agrees(forward, model, mode):
        _fallback(f"the {chosen} {mode} path disagrees with eager on a probe batch")
        forward = None
    if forward is None:
        if mode == "int8":
            _fallback("int8 runs only on ONNX Runtime; running exact fp32 instead")
        forward, chosen = model, "eager"
    executor = Sequential(forward, device, chosen, on_oom)
    executor.warmup_seconds = time.perf_counter() - start
    return executor


def _choose(mode: str, device: torch.device, backend: str) -> str:
    if device.type != "cpu":
        precision.check(mode, device)
        if backend not in ("auto", "eager"):
            raise ValueError(f"backend: {backend} runs on the CPU only; use auto or eager on {device.type}")
        return "eager"
    if backend == "auto":
        return "onnx" if mode == "int8" else "onednn"
    if backend == "onnx" and mode not in ("fp32", "int8"):
        raise ValueError(f"backend: onnx runs fp32 or int8, not {mode}")
    if backend == "onednn" and mode == "int8":
        raise ValueError("backend: onednn runs fp32 or bf16; int8 needs onnx")
    if backend == "eager" and mode == "int8":
        raise ValueError("backend: eager has no int8; use onnx")
    return backend


def _build_onnx(model: nn.Module, mode: str, usable_length: bool) -> Callable | None:
    if not ort.available():
        _fallback("onnxruntime is not installed (pip install 'sgpt-qdrant[fast]')")
        return None
    if not usable_length:
        _fallback("max_length exceeds the local-attention window; ONNX export holds the causal branch only")
        return None
    try:
        path = ort.model_file(model, mode)
        return ort.OrtRunner(path)
    except Exception as exc:  # export/quantisation/session failures all mean: run eager
        _fallback(f"ONNX {mode} export failed ({type(exc).__name__}: {exc})")
        return None


def _fallback(reason: str) -> None:
    warnings.warn(f"sgpt_qdrant: {reason}; falling back", RuntimeWarning, stacklevel=4)
    log.warning("%s; falling back", reason)


def _agrees(fast: Callable, model: nn.Module, mode: str) -> bool:
    """Fast path vs eager on a small right-padded probe: fp32 to float rounding, else cosine."""
    gen = torch.Generator().manual_seed(0)
    lengths = [9, 4, 1]
    ids = torch.randint(0, 50000, (3, 9), generator=gen) % model.transformer.wte.num_embeddings
    mask = (torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]).long()
    with torch.inference_mode():
        want = model(ids, mask).float()
        got = fast(ids, mask).float()
    if got.shape != want.shape or not torch.isfinite(got).all():
        return False
    if mode == "fp32":
        scale = want.abs().max().clamp(min=1e-6)
        return bool((got - want).abs().max() <= 1e-4 * scale)
    return bool(torch.nn.functional.cosine_similarity(got, want, dim=-1).min() >= 0.99)
