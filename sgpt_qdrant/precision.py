"""Precision modes: their names, torch dtypes, which device runs which, and the auto choice.

The one place that knows them, for the encoder, the runtime and the trainer alike:

========  ===============  ==============================================================
``fp32``  torch.float32    every device; exact to the reference (the CPU default)
``bf16``  torch.bfloat16   GPUs that have it (their default); CPUs, fast only where native
``fp16``  torch.float16    GPUs only (no CPU kernels worth having)
``int8``  weights float32  CPUs only, for inference: ONNX Runtime's dynamic quantisation
========  ===============  ==============================================================
"""

from __future__ import annotations

import warnings

import torch

MODES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16,
                                 "fp16": torch.float16, "int8": torch.float32}
ALIASES: dict[str, str] = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
                           "fp16": "fp16", "float16": "fp16", "int8": "int8", "qint8": "int8"}
#: Modes the trainer can run: int8 has no gradients.
TRAINING_MODES = ("fp32", "bf16", "fp16")


def parse(dtype: str | torch.dtype | None, arg: str = "dtype") -> str | None:
    """Canonical mode name, ``None`` for auto; ValueError naming ``arg`` otherwise."""
    if dtype is None or (isinstance(dtype, str) and dtype.lower() == "auto"):
        return None
    if isinstance(dtype, torch.dtype):
        for name, dt in MODES.items():
            if dt == dtype and name != "int8":
                return name
        raise ValueError(f"{arg}: {dtype} is not one of fp32, bf16, fp16, int8")
    if isinstance(dtype, str) and dtype.lower() in ALIASES:
        return ALIASES[dtype.lower()]
    raise ValueError(f"{arg}: {dtype!r} is not one of auto, {', '.join(ALIASES)}")


def name_of(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (float32 is ``"fp32"``)."""
    return parse(dtype) or "fp32"


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 matmuls in hardware (AVX512-BF16 or AMX), not emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def check(mode: str, device: torch.device, arg: str = "dtype") -> None:
    """ValueError where ``device`` cannot run ``mode``; a warning where it runs it slowly."""
    if mode == "int8" and device.type != "cpu":
        raise ValueError(f"{arg}: int8 is a CPU mode (ONNX Runtime); use bf16 or fp16 on GPUs")
    if mode == "fp16" and device.type == "cpu":
        raise ValueError(f"{arg}: fp16 is not supported on the CPU; use bf16 or fp32")
    if mode == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(f"{arg} bf16: this CPU has no native bf16, so it is emulated and slow", stacklevel=3)


def pick(device: torch.device, dtype: str | torch.dtype | None = None, arg: str = "dtype") -> str:
    """The mode to run inference in: auto is bf16 on GPUs that have it, fp32 elsewhere."""
    mode = parse(dtype, arg)
    if mode is None:
        return "bf16" if device.type == "cuda" and cuda_has_bf16() else "fp32"
    check(mode, device, arg)
    return mode


def pick_training(device: torch.device, precision: str | None = "auto", arg: str = "--precision") -> torch.dtype:
    """The autocast dtype to train in: auto is bf16 (fp16 without bf16) on CUDA, fp32 elsewhere."""
    mode = parse(precision, arg)
    if mode is None:
        if device.type == "cuda":
            return torch.bfloat16 if cuda_has_bf16() else torch.float16
        return torch.float32
    if mode not in TRAINING_MODES:
        raise ValueError(f"{arg}: {precision!r} is an inference mode; train in one of auto, "
                         f"{', '.join(TRAINING_MODES)}")
    check(mode, device, arg)
    return MODES[mode]
