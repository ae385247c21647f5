"""Querying what sgpt-ingest stored: dense (SGPT), sparse (BM25) or hybrid, one query or a batch.

Hybrid is done *in Qdrant*: one request with two prefetches (the dense and the sparse top
``prefetch_limit``) fused by Reciprocal Rank Fusion (``FusionQuery(RRF)``), as Qdrant's hybrid
search guide does, so a server, Qdrant Edge and qdrant-client's local mode rank alike and no
result is re-ranked in Python. A batch is one ``query_batch_points`` call; its query texts are
embedded in one ``encoder.encode`` call (token-budget batching).

Works on anything with QdrantClient's ``query_points`` / ``query_batch_points``: a server, the
embedded store, qdrant-client's ``:memory:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .schema import SPARSE_VECTOR_NAME, VECTOR_NAME
from .sparse import query_vectors

MODES = ("dense", "sparse", "hybrid")
#: Each side's candidates before fusion: at least this many, and at least the limit.
PREFETCH_MIN = 100


class QueryEncoder(Protocol):
    def encode(self, texts: list[str]) -> Any: ...


def _check(mode: str, limit: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def requests(texts: Sequence[str], *, encoder: QueryEncoder | None, mode: str = "dense", limit: int = 10,
             query_filter=None, prefetch_limit: int | None = None, with_payload: bool | list[str] = True) -> list:
    """One ``models.QueryRequest`` per text for :func:`search_batch` (and anyone batching them)."""
    from qdrant_client import models

    _check(mode, limit)
    texts = list(texts)
    if mode != "sparse" and encoder is None:
        raise ValueError(f"mode {mode!r} needs an encoder for the dense query vectors")
    dense = [v.tolist() if hasattr(v, "tolist") else list(v) for v in encoder.encode(texts)] if mode != "sparse" \
        else [None] * len(texts)
    sparse = query_vectors(texts) if mode != "dense" else [None] * len(texts)
    depth = max(limit, prefetch_limit or PREFETCH_MIN)
    out = []
    for d, s in zip(dense, sparse):
        if mode == "dense":
            kw: dict[str, Any] = dict(query=d, using=VECTOR_NAME)
        elif mode == "sparse":
            kw = dict(query=s, using=SPARSE_VECTOR_NAME)
        else:
            kw = dict(prefetch=[models.Prefetch(query=d, using=VECTOR_NAME, limit=depth, filter=query_filter),
                                models.Prefetch(query=s, using=SPARSE_VECTOR_NAME, limit=depth, filter=query_filter)],
                      query=models.FusionQuery(fusion=models.Fusion.RRF))
        out.append(models.QueryRequest(**kw, filter=query_filter, limit=limit, with_payload=with_payload))
    return out


def search_batch(client, collection: str, texts: Sequence[str], *, encoder: QueryEncoder | None = None,
                 mode: str = "dense", limit: int = 10, query_filter=None, prefetch_limit: int | None = None,
                 with_payload: bool | list[str] = True) -> list[list]:
    """The top ``limit`` points (``ScoredPoint``) per text, in one ``query_batch_points`` call.

    ``mode``: "dense" (SGPT vectors, ``encoder`` needed), "sparse" (BM25, no model), "hybrid"
    (both, RRF-fused in Qdrant). Sparse and hybrid need a collection written with
    ``--sparse bm25``."""
    texts = list(texts)
    if not texts:
        return []
    reqs = requests(texts, encoder=encoder, mode=mode, limit=limit, query_filter=query_filter,
                    prefetch_limit=prefetch_limit, with_payload=with_payload)
    return [r.points for r in client.query_batch_points(collection, requests=reqs)]


def search(client, collection: str, text: str, *, encoder: QueryEncoder | None = None, mode: str = "dense",
           limit: int = 10, query_filter=None, prefetch_limit: int | None = None,
           with_payload: bool | list[str] = True) -> list:
    """The top ``limit`` points for one query text (see :func:`search_batch`)."""
    req = requests([text], encoder=encoder, mode=mode, limit=limit, query_filter=query_filter,
                   prefetch_limit=prefetch_limit, with_payload=with_payload)[0]
    return client.query_points(collection, query=req.query, using=req.using, prefetch=req.prefetch,
                               query_filter=query_filter, limit=limit, with_payload=with_payload).points


def collection_has_sparse(client, collection: str) -> bool:
    """True when the collection was written with ``--sparse bm25`` (sparse and hybrid can run)."""
    sparse = client.get_collection(collection).config.params.sparse_vectors or {}
    return SPARSE_VECTOR_NAME in sparse
