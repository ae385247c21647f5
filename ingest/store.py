"""What the store holds per document, read once at the start of a run.

State lives in the payload: every point of a document carries its ``ingest_version`` (content
hash + model fingerprint + chunking settings), ``chunk_count`` and ``chunk_index``. A document
is complete when all its points have one version and they are exactly the indices
``0 .. chunk_count-1``. The state also keeps each document's stored point ids, so every delete
of a run (stale chunks of a changed document, pruned documents) is a delete *by id*, never a
filter pass over the collection per document.
For a document left half-written it keeps which points are stored as this run would write them
(``marks``: version and chunk hash per id), so a resumed run embeds only the missing chunks.

The schema is :mod:`ingest.schema`, the client :mod:`ingest.client`. On the embedded store the
state of every complete document comes from two facet counts of indexed keywords (``doc_id`` and
``ingest_state``: no payload is read, 1.4 s instead of 5.9 s for an unchanged re-run of 105k
chunks); the rest from Edge as plain dicts (:meth:`ingest.edge.EdgeClient.iter_payloads`): no
qdrant-client import, no pydantic record per point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import schema
from .schema import (CHUNK_HASH_FIELD, COUNT_FIELD, DOC_ID_FIELD, INDEX_FIELD, RESUME_FIELDS, SOURCE_FIELD,
                     STATE_FIELD, VERSION_FIELD, point_id)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

@dataclass
class DocState:
    """One document's stored points: ids, chunk indices, versions and announced chunk counts."""

    ids: list[str] = field(default_factory=list)
    indices: set[int] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    chunk_counts: set[int] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)  # ingest_source values ("" where a point has none)
    #: point id → :func:`mark` of its version and chunk hash, kept only for a document that is not
    #: complete: what a resumed run need not embed again (a complete one is unchanged or redone whole)
    marks: dict[str, int] = field(default_factory=dict)

    @property
    def points(self) -> int:
        return len(self.ids)

    def complete(self, version: str) -> bool:
        """Written whole at ``version`` by a run that was not interrupted (or was finished since)."""
        n = len(self.ids)
        return self.versions == {version} and self.chunk_counts == {n} and self.indices == set(range(n))

    def holds(self, point_id: str, version: str, chunk_hash: str) -> bool:
        """Whether the point is stored as a run at ``version`` writes it (a resumed run keeps it)."""
        return self.marks.get(point_id) == mark(version, chunk_hash)

    def stale_ids(self, keep: set[str]) -> list[str]:
        """Stored ids a run that wrote ``keep`` must delete (old positions past the new end, strays)."""
        return [i for i in self.ids if i not in keep]


def mark(version: str, chunk_hash: str) -> int:
    """A point's version and chunk hash in 8 bytes (the state holds one per point while it is read)."""
    return int.from_bytes(hashlib.blake2b(f"{version}\0{chunk_hash}".encode(), digest_size=8).digest(), "big")


class PointIds(Sequence):
    """The ids ``point_id(doc_id, 0 .. n-1)`` of a document written whole, made when asked for: an
    unchanged document's ids are never needed, and making them costs seconds per million."""

    def __init__(self, doc_id: str, n: int) -> None:
        self.doc_id, self.n = doc_id, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [point_id(self.doc_id, k) for k in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return point_id(self.doc_id, i % self.n)


#: Documents to read point by point (an index lookup each) before one scroll of every payload is cheaper.
_FEW = 1000


def read_state(client: QdrantClient | None, name: str, *, owns: Callable[[str], bool] | None = None,
               page: int | None = None) -> dict[str, DocState]:
    """Per stored document id (:func:`ingest.schema.doc_key`): its :class:`DocState`.

    On the embedded store, from two facet counts of indexed fields (no payload read): a document
    whose points all carry one :data:`ingest.schema.STATE_FIELD` value, as many as that value's
    chunk count, is complete at that version (its ids are the deterministic ones: they are made
    from the chunk index, so that many distinct points are the indices 0 .. n-1); every other
    document (half-written, several versions, points of an older layout or of another writer) is
    read point by point, or, where there are many, by one scroll of every payload, as elsewhere.
    ``owns`` keeps only the documents of this worker's partition."""
    if client is None or not client.collection_exists(name):
        return {}
    from .edge import EdgeClient

    if isinstance(client, EdgeClient):
        state = _from_facets(client, name, owns)
        if state is not None:
            return state
    return _scan(_payloads(client, name, page or 8192), owns)


def _from_facets(client, name: str, owns: Callable[[str], bool] | None) -> dict[str, DocState] | None:
    points_of = client.facet_counts(name, DOC_ID_FIELD)
    states = client.facet_counts(name, STATE_FIELD) if points_of is not None else None
    if states is None:
        return None
    by_doc: dict[str, list[tuple[str, int, str, int]]] = {}
    for value, n in states.items():
        try:
            key, version, count, source = json.loads(value)
        except (ValueError, TypeError):
            continue
        by_doc.setdefault(key, []).append((version, count, source, n))
    state: dict[str, DocState] = {}
    unclear = []
    for key, n in points_of.items():
        if not isinstance(key, str) or (owns is not None and not owns(key)):
            continue
        found = by_doc.get(key, [])
        if len(found) == 1 and found[0][1] == found[0][3] == n:
            version, count, source, _ = found[0]
            state[key] = DocState(PointIds(schema.doc_id_of(key), n), set(range(n)), {version}, {count}, {source})
        else:
            unclear.append(key)
    if len(unclear) > _FEW:
        return None
    for key in unclear:
        state.update(_scan(client.iter_payloads(name, RESUME_FIELDS, page=1024, where=(DOC_ID_FIELD, key)), None))
    return state


def _scan(payloads: Iterable[tuple[object, dict]], owns: Callable[[str], bool] | None) -> dict[str, DocState]:
    """The state of the documents of ``(point id, payload)`` pairs (their :data:`RESUME_FIELDS`)."""
    state: dict[str, DocState] = {}
    others: set[str] = set()  # documents of other partitions
    for pid, payload in payloads:
        doc_id = payload.get(DOC_ID_FIELD)
        if not isinstance(doc_id, str):  # not a document's point (written by something else): leave it
            continue
        doc = state.get(doc_id)
        if doc is None:
            if doc_id in others:
                continue
            if owns is not None and not owns(doc_id):
                others.add(doc_id)
                continue
            doc = state[doc_id] = DocState()
        pid = str(pid)
        doc.ids.append(pid)
        index = payload.get(INDEX_FIELD)
        doc.indices.add(index if isinstance(index, int) else -1)
        version = str(payload.get(VERSION_FIELD))
        doc.versions.add(version)
        count = payload.get(COUNT_FIELD, -1)
        doc.chunk_counts.add(count if isinstance(count, int) else -1)
        source = payload.get(SOURCE_FIELD)
        doc.sources.add(source if isinstance(source, str) else "")
        if isinstance(chunk_hash := payload.get(CHUNK_HASH_FIELD), str):
            doc.marks[pid] = mark(version, chunk_hash)
    for doc in state.values():
        if len(doc.versions) == 1 and doc.complete(next(iter(doc.versions))):
            doc.marks = {}  # unchanged (skipped) or rewritten whole: nothing to keep
    return state


def _payloads(client, name: str, page: int) -> Iterator[tuple[object, dict]]:
    """(point id, the :data:`RESUME_FIELDS` it has) of every stored point, a page of ``page`` at a time."""
    from .edge import EdgeClient

    if isinstance(client, EdgeClient):
        yield from client.iter_payloads(name, RESUME_FIELDS, page=page)
        return
    offset = None
    while True:
        points, offset = client.scroll(name, limit=page, offset=offset, with_payload=RESUME_FIELDS,
                                       with_vectors=False)
        for p in points:
            yield p.id, p.payload or {}
        if offset is None:
            return
