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
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .. import precision
from . import onednn, ort

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "onednn", "onnx")


@dataclass
class Runner:
    """A forward pass ``(input_ids, mask) -> vectors`` and how it came to be."""

    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    backend: str
    warmup_seconds: float


def build(model: nn.Module, mode: str, device: torch.device, backend: str = "auto",
          usable_length: bool = True) -> Runner:
    """The fastest runner for ``model`` (already on ``device`` in ``mode``'s dtype) that works here.

    ``usable_length`` is False where texts may be longer than a local-attention window: the
    exported graph only holds the causal branch, so ONNX is not used then.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    start = time.perf_counter()
    wanted = _choose(mode, device, backend)
    runner = None
    if wanted == "onednn":
        packed = onednn.pack(copy.deepcopy(model), precision.MODES[mode])
        if packed is None:
            _fallback(f"oneDNN {mode} linear layers are not available on this CPU")
        else:
            runner = Runner(packed, "onednn", 0.0)
    elif wanted == "onnx":
        runner = _build_onnx(model, mode, usable_length)
    if runner is not None and not _agrees(runner.forward, model, mode):
        _fallback(f"the {runner.backend} {mode} path disagrees with eager on a probe batch")
        runner = None
    if runner is None:
        if mode == "int8":
            _fallback("int8 runs only on ONNX Runtime; running exact fp32 instead")
        runner = Runner(model, "eager", 0.0)
    runner.warmup_seconds = time.perf_counter() - start
    return runner


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


def _build_onnx(model: nn.Module, mode: str, usable_length: bool) -> Runner | None:
    if not ort.available():
        _fallback("onnxruntime is not installed (pip install 'sgpt-qdrant[fast]')")
        return None
    if not usable_length:
        _fallback("max_length exceeds the local-attention window; ONNX export holds the causal branch only")
        return None
    try:
        path = ort.model_file(model, mode)
        return Runner(ort.OrtRunner(path), "onnx", 0.0)
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
