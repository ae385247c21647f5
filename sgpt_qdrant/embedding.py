"""LlamaIndex's ``BaseEmbedding`` around our own SGPT runtime.

``Settings.embed_model = SGPTEmbedding()`` is all a LlamaIndex user needs: the fields are plain
and serialisable, the model is loaded once into a private attribute, and batches go to the
:class:`~sgpt_qdrant.engine.Encoder` whole so that it can sort and pack them.

What the model cannot see is said by the encoder, once per call, as a Python warning:
a text over ``max_length`` tokens is cut there as the reference cuts it (:class:`TruncationWarning`,
with how many texts and tokens; build nodes with
:class:`~sgpt_qdrant.node_parser.SGPTNodeParser` so that none is); an empty or
whitespace-only text is embedded as the end-of-text token alone (:class:`EmptyTextWarning`);
``None`` or any non-string raises ``TypeError`` naming its position.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import Field, PrivateAttr

from .checkpoint import DEFAULT_MODEL, resolve_model_name
from .engine import Encoder
from .tokens import EmptyTextWarning, TruncationWarning

__all__ = ["EmptyTextWarning", "SGPTEmbedding", "TruncationWarning"]


class SGPTEmbedding(BaseEmbedding):
    """SGPT sentence embeddings (symmetric: queries and documents are embedded alike)."""

    model_name: str = Field(default=DEFAULT_MODEL, description="Hub id or local directory of the checkpoint "
                            "(not given: $SGPT_MODEL, else the published Hub id).")
    device: str | None = Field(default=None, description="torch device; None picks cuda > mps > cpu.")
    dtype: str | None = Field(default=None, description="Precision mode: fp32, bf16, fp16 (GPU) or int8 "
                              "(CPU, needs onnxruntime); None: bf16 on capable GPUs, else fp32.")
    max_length: int | None = Field(default=None, description="Token limit; None uses the model's (75).")
    normalize: bool = Field(default=False, description="L2-normalise vectors (the reference returns raw ones).")
    token_budget: int | None = Field(default=None, description="Padded tokens per forward batch; None: by device.")
    embed_batch_size: int = Field(default=256, gt=0, le=8192, description="Texts handed to the encoder at once.")

    _encoder: Encoder = PrivateAttr()

    def __init__(self, model_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(model_name=resolve_model_name(model_name), **kwargs)
        self._encoder = Encoder(self.model_name, device=self.device, dtype=self.dtype,
                                max_length=self.max_length, token_budget=self.token_budget)

    @classmethod
    def class_name(cls) -> str:
        return "SGPTEmbedding"

    @property
    def dimension(self) -> int:
        return self._encoder.dimension

    @property
    def encoder(self) -> Encoder:
        """The runtime underneath, for direct batched use (numpy in, numpy out)."""
        return self._encoder

    @property
    def truncated_count(self) -> int:
        """How many texts so far were longer than ``max_length`` tokens and were cut."""
        return self._encoder.truncated

    def _embed(self, texts: list[str]) -> list[Embedding]:
        vectors = self._encoder.encode(texts)
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.tolist()

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await asyncio.to_thread(self._embed, [query]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await asyncio.to_thread(self._embed, [text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._embed, texts)
