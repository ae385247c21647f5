"""What the store holds per document, read once at the start of a run.

State lives in the payload: every point of a document carries its ``ingest_version`` (content
hash + model fingerprint + chunking settings), ``chunk_count`` and ``chunk_index``. A document
is complete when all its points have one version and they are exactly the indices
``0 .. chunk_count-1``. The state also keeps each document's stored point ids, so every delete
of a run (stale chunks of a changed document, pruned documents) is a delete *by id*, never a
filter pass over the collection per document.

The schema is :mod:`ingest.schema`, the client :mod:`ingest.client`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from qdrant_client import QdrantClient

from .schema import COUNT_FIELD, DOC_ID_FIELD, INDEX_FIELD, STATE_FIELDS, VERSION_FIELD

@dataclass
class DocState:
    """One document's stored points: ids, chunk indices, versions and announced chunk counts."""

    ids: list[str] = field(default_factory=list)
    indices: set[int] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    chunk_counts: set[int] = field(default_factory=set)

    @property
    def points(self) -> int:
        return len(self.ids)

    def complete(self, version: str) -> bool:
        """Written whole at ``version`` by a run that was not interrupted (or was finished since)."""
        n = len(self.ids)
        return self.versions == {version} and self.chunk_counts == {n} and self.indices == set(range(n))

    def stale_ids(self, keep: set[str]) -> list[str]:
        """Stored ids a run that wrote ``keep`` must delete (old positions past the new end, strays)."""
        return [i for i in self.ids if i not in keep]


def read_state(client: QdrantClient | None, name: str, *, owns: Callable[[str], bool] | None = None,
               page: int | None = None) -> dict[str, DocState]:
    """Per stored document id (:func:`ingest.schema.doc_key`): its :class:`DocState`. One scroll.

    ``owns`` keeps only the documents of this worker's partition."""
    state: dict[str, DocState] = {}
    others: set[str] = set()  # documents of other partitions
    if client is None or not client.collection_exists(name):
        return state
    page = page or 8192
    offset = None
    while True:
        points, offset = client.scroll(name, limit=page, offset=offset, with_payload=STATE_FIELDS,
                                       with_vectors=False)
        for p in points:
            payload = p.payload or {}
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
            doc.ids.append(str(p.id))
            index = payload.get(INDEX_FIELD)
            doc.indices.add(index if isinstance(index, int) else -1)
            doc.versions.add(str(payload.get(VERSION_FIELD)))
            count = payload.get(COUNT_FIELD, -1)
            doc.chunk_counts.add(count if isinstance(count, int) else -1)
        if offset is None:
            return state
