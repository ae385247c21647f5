"""Texts → vectors, batched for throughput. No LlamaIndex and no Qdrant here.

Texts are tokenised once, sorted by length and cut into batches by a token budget (batch size ×
padded length), so each batch is padded only to its own longest text and short texts travel in
large batches. Results come back in the caller's order.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .model import SGPTModel

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
#: Padded tokens per batch. Large on GPUs (throughput grows with batch), modest on CPUs
#: (throughput is flat past a few thousand tokens, memory is not).
DEFAULT_TOKEN_BUDGET = {"cuda": 64 * 1024, "mps": 16 * 1024, "cpu": 4 * 1024}


def pick_device(device: str | None = None) -> torch.device:
    """``None`` means the best available: cuda > mps > cpu."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 matmuls in hardware (AVX512-BF16 or AMX), not emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``None``/"auto": bf16 on GPUs that support it, fp32 elsewhere (exact to the reference)."""
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype in (None, "auto"):
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    elif dtype in DTYPES:
        chosen = DTYPES[dtype]
    else:
        raise ValueError(f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPES)}")
    if device.type == "cpu" and chosen == torch.float16:
        raise ValueError("dtype: fp16 is not supported on the CPU; use bf16 or fp32")
    if device.type == "cpu" and chosen == torch.bfloat16 and not cpu_has_native_bf16():
        warnings.warn("dtype bf16: this CPU has no native bf16, so it is emulated and slow", stacklevel=3)
    return chosen


def token_budget_batches(lengths: Sequence[int], token_budget: int, max_batch: int) -> list[list[int]]:
    """Indices grouped longest first so that ``len(batch) * longest <= token_budget``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = max(lengths[current[0]] if current else lengths[i], 1)
        if current and ((len(current) + 1) * width > token_budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class Encoder:
    """An SGPT model loaded once, ready to embed many texts fast.

    ``model`` is a Hub id, a local directory in the Hub layout or a loaded
    :class:`~sgpt_qdrant.checkpoint.Checkpoint`.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | ckpt.Checkpoint = ckpt.DEFAULT_MODEL,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int | None = None,
        token_budget: int | None = None,
        max_batch_size: int = 1024,
    ) -> None:
        self.checkpoint = model if isinstance(model, ckpt.Checkpoint) else ckpt.load(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        limit = self.checkpoint.max_seq_length
        if max_length is not None and not 0 < max_length <= self.checkpoint.config.max_position_embeddings:
            raise ValueError(f"max_length: {max_length} must be in 1..{self.checkpoint.config.max_position_embeddings}")
        self.max_length = int(max_length or limit)
        self.token_budget = int(token_budget or DEFAULT_TOKEN_BUDGET.get(self.device.type, 4096))
        self.max_batch_size = max_batch_size
        self.tokenizer = self.checkpoint.tokenizer
        self.model = SGPTModel(self.checkpoint).to(self.device, self.dtype).eval()
        self.model.requires_grad_(False)
        self.truncated = 0  # texts cut to max_length so far, as the reference cuts them
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self.checkpoint.dimension

    @property
    def model_name(self) -> str:
        return self.checkpoint.source

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the reference makes them: stripped, no BOS/EOS, cut to ``max_length``."""
        if not texts:
            return []
        ids = self.tokenizer([t.strip() for t in texts], add_special_tokens=False)["input_ids"]
        cut = sum(len(x) > self.max_length for x in ids)
        if cut:
            self.truncated += cut
            log.debug("truncated %d of %d texts to %d tokens", cut, len(texts), self.max_length)
        return [x[: self.max_length] for x in ids]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``; returns float32 of shape ``(len(texts), dimension)`` in input order."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        return self.encode_ids(self.tokenize(texts), show_progress=show_progress)

    def encode_ids(self, ids: Sequence[Sequence[int]], show_progress: bool = False) -> np.ndarray:
        out = torch.empty((len(ids), self.dimension), dtype=torch.float32)
        if not ids:
            return out.numpy()
        batches = token_budget_batches([len(x) for x in ids], self.token_budget, self.max_batch_size)
        pending: list[tuple[list[int], torch.Tensor]] = []
        with self._lock, torch.inference_mode():
            for batch, vectors in self._run(ids, batches, show_progress):
                pending.append((batch, vectors))
            for batch, vectors in pending:  # one device→host sync per call, not per batch
                out[batch] = vectors.float().cpu()
        return out.numpy()

    def _run(self, ids, batches, show_progress) -> Iterator[tuple[list[int], torch.Tensor]]:
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ids), unit="text", desc="embedding")
        try:
            for batch in batches:
                yield from self._forward_splitting(ids, batch)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()

    def _forward_splitting(self, ids, batch: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Run a batch; on out-of-memory halve it and go on."""
        try:
            yield batch, self._forward(ids, batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            self.token_budget = max(self.token_budget // 2, 256)
            log.warning("out of memory on a batch of %d; splitting (token budget now %d)", len(batch), self.token_budget)
            yield from self._forward_splitting(ids, batch[:half])
            yield from self._forward_splitting(ids, batch[half:])

    def _forward(self, ids, batch: list[int]) -> torch.Tensor:
        width = max(1, max(len(ids[i]) for i in batch))
        input_ids = torch.full((len(batch), width), self.checkpoint.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = len(ids[i])
            input_ids[row, :n] = torch.as_tensor(ids[i], dtype=torch.long)
            mask[row, :n] = 1
        if self.device.type == "cuda":
            input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        return self.model(input_ids, mask)
