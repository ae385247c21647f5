"""Copying one collection between stores (Edge, server, local-mode reader), verified.

Why: moving a store to a server (several processes query while ingest runs, more than one machine,
more than one disk) or back, and migrating a local-mode store, must lose nothing and embed nothing.
The target gets the source's vector configuration (dense and sparse) and keyword payload indexes
on the fields we filter on; points are scrolled with vectors and payloads and upserted by id, so a
re-run after a crash (or Ctrl-C) simply finishes the job. At the end the copy is verified: the
target's exact count equals the number of points read, and a spread sample of them reads back
with the same ids, equal payloads and vectors equal to float tolerance (cosine vectors compared
normalised: a server normalises them on write).

Source and target are anything with the ``QdrantClient`` methods used here: a ``QdrantClient``,
the Edge facade, or :class:`ingest.legacy_local.LegacyLocalStore` (source only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from qdrant_client import QdrantClient, models

from .client import client_url, is_local
from .collection_config import KEYWORD_INDEXES
from .upload import Uploader

__all__ = ["CopyError", "CopyReport", "copy_collection", "KEYWORD_FIELDS", "store_name"]

#: Fields every copy indexes as keywords (what ingest, the examples and LlamaIndex filter on).
KEYWORD_FIELDS = KEYWORD_INDEXES
SAMPLE = 64
RTOL, ATOL = 1e-5, 1e-6


class CopyError(RuntimeError):
    """The copy cannot start (no such collection, incompatible target) or does not verify."""


@dataclass
class CopyReport:
    """What a copy did, for the command's summary."""

    source: str
    target: str
    collection: str
    target_collection: str
    points: int = 0  # points read from the source (= in the target, verified)
    created: bool = False  # the target collection was created by this copy
    sampled: int = 0  # points compared field by field
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_name(store: Any) -> str:
    """Where a store lives, for messages (no credentials): the legacy reader says so itself."""
    return getattr(store, "where", None) or client_url(store)


def copy_collection(source: Any, target: Any, name: str, *, target_name: str | None = None, batch: int = 256,
                    sample: int = SAMPLE, on_progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy collection ``name`` of ``source`` to ``target_name`` (default: the same) of ``target``.

    Creates the collection and its keyword payload indexes when missing, checks an existing one
    has the same vectors, upserts every point by id, then verifies count and a sample; raises
    :class:`CopyError` (one line) when anything does not match. ``on_progress(done, total)``
    after each batch."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    started = time.perf_counter()
    target_name = target_name or name
    report = CopyReport(store_name(source), store_name(target), name, target_name)
    if not source.collection_exists(name):
        raise CopyError(f"{report.source}: no collection {name!r}")
    info = source.get_collection(name)
    params = info.config.params
    report.created = _ensure_target(target, target_name, params, info.payload_schema or {}, report)
    total = source.count(name, exact=True).count
    held = 0 if report.created else target.count(target_name, exact=True).count
    if held > total:  # not an interrupted copy of this source: refuse before mixing the two
        raise CopyError(f"{report.target}: collection {target_name!r} already holds {held} points, more than the "
                        f"{total} of the source: copy into a new collection name")
    distances = _distances(params.vectors)
    picks = _Sampler(total, sample)
    offset = None
    seen = 0
    with Uploader(target, target_name, batch_size=batch, url=report.target) as writer:
        while True:
            records, offset = source.scroll(name, limit=batch, offset=offset, with_payload=True, with_vectors=True)
            writer.upsert(models.PointStruct(id=r.id, vector=r.vector if r.vector is not None else {},
                                             payload=r.payload or {}) for r in records)
            for record in records:
                picks.offer(seen, record)
                seen += 1
            if on_progress is not None:
                on_progress(seen, max(total, seen))
            if offset is None or not records:
                break
    report.points = seen
    _verify(target, target_name, seen, picks.records, distances, report)
    report.sampled = len(picks.records)
    report.seconds = time.perf_counter() - started
    return report


# -- creating the target ------------------------------------------------------------------


def _vectors_signature(vectors: Any) -> Any:
    """What must match between source and target: names, sizes, distances, multivector or not."""
    def one(p: models.VectorParams) -> tuple:
        return (p.size, getattr(p.distance, "value", p.distance), p.multivector_config is not None)

    if isinstance(vectors, models.VectorParams):
        return one(vectors)
    return {k: one(v) for k, v in (vectors or {}).items()}


def _ensure_target(target: Any, name: str, params: models.CollectionParams, payload_schema: dict,
                   report: CopyReport) -> bool:
    created = False
    if not target.collection_exists(name):
        vectors = params.vectors
        if isinstance(vectors, dict):
            vectors = {k: _vector_params(v) for k, v in vectors.items()}
        elif isinstance(vectors, models.VectorParams):
            vectors = _vector_params(vectors)
        sparse = {k: models.SparseVectorParams(index=v.index, modifier=v.modifier)
                  for k, v in (params.sparse_vectors or {}).items()} or None
        target.create_collection(name, vectors_config=vectors if vectors is not None else {},
                                 sparse_vectors_config=sparse)
        created = True
    have = target.get_collection(name)
    want_dense, got_dense = _vectors_signature(params.vectors), _vectors_signature(have.config.params.vectors)
    want_sparse, got_sparse = sorted(params.sparse_vectors or {}), sorted(have.config.params.sparse_vectors or {})
    if want_dense != got_dense or want_sparse != got_sparse:
        raise CopyError(f"{report.target}: collection {name!r} exists with other vectors ({_show(got_dense, got_sparse)}; "
                        f"the source has {_show(want_dense, want_sparse)}): copy to another collection name")
    existing = have.payload_schema or {}
    wanted: dict[str, Any] = {field: models.PayloadSchemaType.KEYWORD for field in KEYWORD_FIELDS}
    for field, index in payload_schema.items():  # a server source's own indexes come along
        wanted.setdefault(field, index.params or index.data_type)
    for field, schema in wanted.items():
        if field not in existing and not (isinstance(target, QdrantClient) and is_local(target)):  # ignored there
            target.create_payload_index(name, field, field_schema=schema, wait=True)
    return created


def _vector_params(p: models.VectorParams) -> models.VectorParams:
    """Size, distance and the layout; storage tuning (on_disk, HNSW, quantisation) is the target's."""
    return models.VectorParams(size=p.size, distance=p.distance, multivector_config=p.multivector_config,
                               datatype=p.datatype)


def _show(dense: Any, sparse: list[str]) -> str:
    if isinstance(dense, tuple):
        text = f"unnamed {dense[0]}-d {dense[1]}"
    else:
        text = ", ".join(f"{k!r} {v[0]}-d {v[1]}" for k, v in sorted(dense.items())) or "no dense vectors"
    return text + (f"; sparse {', '.join(map(repr, sparse))}" if sparse else "")


# -- verifying ------------------------------------------------------------------------------


def _distances(vectors: Any) -> dict[str, str]:
    if isinstance(vectors, models.VectorParams):
        return {"": getattr(vectors.distance, "value", vectors.distance)}
    return {k: getattr(v.distance, "value", v.distance) for k, v in (vectors or {}).items()}


class _Sampler:
    """Up to ``size`` records spread evenly over the scroll (first and last included)."""

    def __init__(self, total: int, size: int) -> None:
        self.size = max(0, size)
        self.step = max(1, math.ceil(total / self.size)) if self.size else 0
        self.total = total
        self.records: list[models.Record] = []
        self.last: models.Record | None = None

    def offer(self, position: int, record: models.Record) -> None:
        if not self.size:
            return
        if position % self.step == 0 and len(self.records) < self.size:
            self.records.append(record)
        elif position == self.total - 1 and self.records and self.records[-1] is not record:
            self.records[-1] = record  # keep the last point in the sample


def _verify(target: Any, name: str, expected: int, sample: list[models.Record], distances: dict[str, str],
            report: CopyReport) -> None:
    count = target.count(name, exact=True).count
    if count != expected:
        raise CopyError(f"{report.target}: collection {name!r} holds {count} points after the copy, the source "
                        f"{report.source} gave {expected}" + (
                            ": the target held other points before (copy into a new collection name)"
                            if count > expected else ": the target lost writes; run the copy again"))
    if not sample:
        return
    got = {_key(r.id): r for r in target.retrieve(name, [r.id for r in sample], with_payload=True, with_vectors=True)}
    for want in sample:
        have = got.get(_key(want.id))
        where = f"{report.target}: collection {name!r}, point {want.id}"
        if have is None:
            raise CopyError(f"{where}: missing after the copy")
        if (have.payload or {}) != (want.payload or {}):
            keys = sorted(set(have.payload or {}) ^ set(want.payload or {})) or sorted(
                k for k in (want.payload or {}) if (have.payload or {}).get(k) != want.payload[k])
            raise CopyError(f"{where}: payload differs from the source (keys {', '.join(map(repr, keys[:5]))})")
        problem = _vector_difference(want.vector, have.vector, distances)
        if problem:
            raise CopyError(f"{where}: {problem}")


def _key(point_id: Any) -> str:
    return str(point_id).lower()


def _named(vector: Any) -> dict[str, Any]:
    if vector is None:
        return {}
    return vector if isinstance(vector, dict) else {"": vector}


def _vector_difference(want: Any, have: Any, distances: dict[str, str]) -> str | None:
    import numpy as np

    want, have = _named(want), _named(have)
    if sorted(want) != sorted(have):
        return f"vectors {sorted(have)} instead of {sorted(want)}"
    for vector_name, a in want.items():
        b = have[vector_name]
        label = f"vector {vector_name!r}" if vector_name else "the vector"
        if isinstance(a, models.SparseVector) or isinstance(b, models.SparseVector):
            if not (isinstance(a, models.SparseVector) and isinstance(b, models.SparseVector)):
                return f"{label} is sparse on one side only"
            pa, pb = dict(zip(a.indices, a.values)), dict(zip(b.indices, b.values))
            if sorted(pa) != sorted(pb) or not np.allclose([pa[i] for i in sorted(pa)], [pb[i] for i in sorted(pa)],
                                                           rtol=RTOL, atol=ATOL):
                return f"{label} differs from the source"
            continue
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if x.shape != y.shape:
            return f"{label} has shape {y.shape} instead of {x.shape}"
        if distances.get(vector_name) == "Cosine":
            x, y = _unit(x), _unit(y)
        if not np.allclose(x, y, rtol=RTOL, atol=ATOL):
            return f"{label} differs from the source (largest difference {float(np.max(np.abs(x - y))):.3g})"
    return None


def _unit(x):
    import numpy as np

    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
