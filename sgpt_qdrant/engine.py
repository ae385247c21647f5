"""Texts → vectors, batched for throughput. No LlamaIndex and no Qdrant here.

Texts are tokenised once, sorted by length and cut into batches by a token budget (batch size ×
padded length), so each batch is padded only to its own longest text and short texts travel in
large batches. Results come back in the caller's order.

The forward pass itself runs on the fastest path for the device and precision mode (see
:mod:`sgpt_qdrant.runtime`): oneDNN packed linear layers or ONNX Runtime on CPUs, eager
SDPA on GPUs with one model copy and one persistent worker per GPU.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import checkpoint as ckpt
from . import precision, runtime, tokens
from .devices import pick_devices
from .model import SGPTModel
from .progress import Progress

log = logging.getLogger(__name__)

#: Padded tokens per batch. Large on GPUs (throughput grows with batch), modest on CPUs
#: (throughput is flat past a few thousand tokens, memory is not). CUDA sizes it to free memory.
DEFAULT_TOKEN_BUDGET = {"cuda": 64 * 1024, "mps": 16 * 1024, "cpu": 4 * 1024}
#: Texts per batch at most: GPUs want wide batches of short texts, CPUs gain nothing past ~1k.
DEFAULT_MAX_BATCH = {"cuda": 4096, "mps": 1024, "cpu": 1024}
#: On GPUs, texts are tokenised in chunks of this many on a helper thread while the GPU works.
TOKENIZE_CHUNK = 16384


class Encoder:
    """An SGPT model loaded once, ready to embed many texts fast.

    ``model`` is a Hub id, a local directory in the Hub layout or a loaded
    :class:`~sgpt_qdrant.checkpoint.Checkpoint`; ``None`` means ``$SGPT_MODEL``, else the
    published Hub id. ``dtype`` is the precision mode: ``fp32``
    (default on CPUs; equal to the reference), ``bf16`` (default on GPUs that have it; on CPUs
    only sensible with native bf16), ``fp16`` (GPUs) or ``int8`` (CPUs, needs onnxruntime).
    ``device`` is a torch device, ``"cuda"`` for every visible GPU, or a list of devices.
    ``backend`` forces an execution path (see :mod:`sgpt_qdrant.runtime`); ``"auto"`` picks
    the fastest that works here and falls back to eager, with a warning, when it cannot.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | ckpt.Checkpoint | None = None,
        device: str | Sequence[str] | None = None,
        dtype: str | torch.dtype | None = None,
        max_length: int | None = None,
        token_budget: int | None = None,
        max_batch_size: int | None = None,
        backend: str = "auto",
    ) -> None:
        self.checkpoint = model if isinstance(model, ckpt.Checkpoint) else ckpt.load(model)
        self.devices = pick_devices(device)
        self.device = self.devices[0]
        self.mode = precision.pick(self.device, dtype)
        self.dtype = precision.MODES[self.mode]
        limit = self.checkpoint.max_seq_length
        config = self.checkpoint.config
        if max_length is not None and not 0 < max_length <= config.max_position_embeddings:
            raise ValueError(f"max_length: {max_length} must be in 1..{config.max_position_embeddings}")
        self.max_length = int(max_length or limit)
        self.max_batch_size = int(max_batch_size or DEFAULT_MAX_BATCH.get(self.device.type, 1024))
        self.tokenizer = self.checkpoint.tokenizer
        eos = self.tokenizer.eos_token_id
        self._empty_id = int(eos if eos is not None else self.checkpoint.pad_id)
        self.model = SGPTModel(self.checkpoint).to(self.device, self.dtype).eval()
        self.model.requires_grad_(False)
        if token_budget:
            self.token_budget = int(token_budget)
        elif self.device.type == "cuda":
            inner = config.intermediate_size or 4 * config.hidden_size
            self.token_budget = runtime.cuda_token_budget(self.devices, config.hidden_size, inner, self.dtype)
        else:
            self.token_budget = DEFAULT_TOKEN_BUDGET.get(self.device.type, 4096)
        self.truncated = 0  # texts cut to max_length so far, as the reference cuts them
        self._lock = threading.Lock()
        window_ok = "local" not in config.attention_layers or self.max_length <= int(config.window_size)
        me = weakref.ref(self)  # the executor (GPU workers) must not keep the encoder alive
        self._executor = runtime.build(self.model, self.mode, self.devices, backend, usable_length=window_ok,
                                       on_oom=lambda: (me() is not None) and me()._shrink_budget())
        weakref.finalize(self, self._executor.close)  # GPU workers exit when the encoder is collected
        self.backend = self._executor.backend
        log.info("encoder ready: %s on %s, %s backend, warm-up %.2fs", self.mode,
                 ",".join(map(str, self.devices)), self.backend, self._executor.warmup_seconds)

    @property
    def warmup_seconds(self) -> float:
        """One-time set-up of the execution path: packing, ONNX export (or cache load), checks."""
        return self._executor.warmup_seconds

    @property
    def dimension(self) -> int:
        return self.checkpoint.dimension

    @property
    def model_name(self) -> str:
        return self.checkpoint.source

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the reference makes them: stripped, no BOS/EOS, cut to ``max_length``.

        What the model cannot see is said once per call, as a Python warning: texts cut at
        ``max_length`` (:class:`~sgpt_qdrant.tokens.TruncationWarning`, with how many tokens), and
        empty or whitespace-only texts, which have no token to pool (sentence-transformers returns
        a zero vector in a mixed batch and fails on a batch of only such texts): they are embedded
        as the end-of-text token alone, a defined vector (:class:`~sgpt_qdrant.tokens.EmptyTextWarning`).
        """
        return self._tokenize(texts)

    def _tokenize(self, texts: Sequence[str], offset: int = 0) -> list[list[int]]:
        out = tokens.tokenize(self.tokenizer, texts, self.max_length, empty_id=self._empty_id)
        if out.truncated:
            self.truncated += out.truncated
            warnings.warn(
                f"{out.truncated} of {len(texts)} texts were longer than {self.max_length} tokens and were cut "
                f"({'at least ' if out.cut_at_least else ''}{out.tokens_cut} tokens not embedded, up to "
                f"{'at least ' if out.cut_at_least else ''}{out.most_cut} from one text), as the reference "
                "cuts them; split documents with sgpt_qdrant.SGPTNodeParser (LlamaIndex) or sgpt-ingest so that "
                "no text is cut", tokens.TruncationWarning, stacklevel=4)
        if out.empty:
            shown = ", ".join(f"texts[{offset + i}]" for i in out.empty[:5]) + (" ..." if len(out.empty) > 5 else "")
            warnings.warn(f"{len(out.empty)} empty or whitespace-only texts ({shown}) were embedded as the "
                          "end-of-text token alone (the reference's all-zero vector would make cosine "
                          "similarity NaN)", tokens.EmptyTextWarning, stacklevel=4)
        return out.ids

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``; returns float32 of shape ``(len(texts), dimension)`` in input order."""
        tokens.check_texts(texts)
        if self._executor.streams and len(texts) > TOKENIZE_CHUNK:
            return self._embed(self._tokenize_ahead(texts), len(texts), show_progress)
        return self.encode_ids(self.tokenize(texts), show_progress=show_progress)

    def encode_ids(self, ids: Sequence[Sequence[int]], show_progress: bool = False) -> np.ndarray:
        """Embed already tokenised texts (as :meth:`tokenize` makes them), in input order."""
        return self._embed([(ids, 0)], len(ids), show_progress)

    def _embed(self, chunks: Iterable[tuple[Sequence[Sequence[int]], int]], total: int,
               show_progress: bool) -> np.ndarray:
        """Plan and pad the batches of each ``(ids, offset)`` chunk; the executor runs them."""
        out = torch.empty((total, self.dimension), dtype=torch.float32)
        if not total:
            return out.numpy()

        def padded():
            for ids, offset in chunks:
                for batch, input_ids, mask in tokens.padded_batches(
                        ids, self.checkpoint.pad_id, self.token_budget, self.max_batch_size,
                        min_tokens=int(self.token_budget * tokens.EARLY_CLOSE_SHARE), pin=self._executor.pin):
                    yield [offset + i for i in batch], input_ids, mask

        with self._lock, Progress(total, "text", "embedding", enabled=show_progress, bar_off_terminal=True) as bar:
            for batch, vectors in self._executor.run(padded()):
                out[batch] = vectors.float()
                bar.update(len(batch))
        return out.numpy()

    def _shrink_budget(self) -> None:
        self.token_budget = max(self.token_budget // 2, 256)
        log.info("token budget now %d", self.token_budget)

    def _tokenize_ahead(self, texts: Sequence[str]) -> Iterator[tuple[list[list[int]], int]]:
        """Chunks of ``TOKENIZE_CHUNK`` texts, the next tokenised on a helper thread meanwhile."""
        with ThreadPoolExecutor(1, thread_name_prefix="sgpt-tokenize") as pool:
            future = pool.submit(self._tokenize, texts[0:TOKENIZE_CHUNK], 0)
            for start in range(0, len(texts), TOKENIZE_CHUNK):
                ids = future.result()
                nxt = start + TOKENIZE_CHUNK
                if nxt < len(texts):
                    future = pool.submit(self._tokenize, texts[nxt:nxt + TOKENIZE_CHUNK], nxt)
                yield ids, start

