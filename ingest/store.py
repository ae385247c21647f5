"""What the store holds per document, read once at the start of a run, and the embedded store's tuning.

State lives in the payload: every point of a document carries its ``ingest_version`` (content
hash + model fingerprint + chunking settings), ``chunk_count`` and ``chunk_index``. A document
is complete when all its points have one version and they are exactly the indices
``0 .. chunk_count-1``. The state also keeps each document's stored point ids, so every delete
of a run (stale chunks of a changed document, pruned documents) is a delete *by id*: the
embedded store evaluates a filter in Python over every stored point, which made a run quadratic.

The schema is :mod:`ingest.schema`, the client :mod:`ingest.client`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from qdrant_client import QdrantClient

from .client import is_local
from .schema import COUNT_FIELD, DOC_ID_FIELD, INDEX_FIELD, SOURCE_FIELD, STATE_FIELDS, VERSION_FIELD

log = logging.getLogger(__name__)


def tune_local(client: QdrantClient, name: str) -> bool:
    """Embedded store: SQLite in WAL mode with synchronous=NORMAL instead of a full sync per point.

    qdrant-client's local mode commits every point on its own; with the default rollback journal
    that is several fsyncs per point (about 18 ms here, as long as the model takes per chunk).
    In WAL mode a killed process loses nothing committed; a power cut may lose the last commits,
    which the next run redoes because the state in the payload says what is missing. Best effort:
    a qdrant-client without these internals keeps its defaults.
    """
    try:
        connection = client._client.collections[name].storage.storage
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return True
    except (AttributeError, KeyError, TypeError) as exc:
        log.debug("embedded store keeps its SQLite defaults: %s", exc)
        return False


@dataclass
class DocState:
    """One document's stored points: ids, chunk indices, versions and announced chunk counts."""

    ids: list[str] = field(default_factory=list)
    indices: set[int] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    chunk_counts: set[int] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)  # ingest_source values ("" where a point has none)

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
    # local mode sorts every id on each page: few big pages; a server streams smaller ones
    page = page or (1 << 17 if is_local(client) else 8192)
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
            source = payload.get(SOURCE_FIELD)
            doc.sources.add(source if isinstance(source, str) else "")
        if offset is None:
            return state
