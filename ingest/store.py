"""What the ingest stores in Qdrant: open a client, read what is stored per document, build the
points LlamaIndex reads, and the filters that delete them.

Payloads are made by LlamaIndex itself (``node_to_metadata_dict`` of a ``TextNode``), so
``QdrantVectorStore`` reads them back as nodes: ``_node_content``, ``_node_type``, ``doc_id`` /
``document_id`` / ``ref_doc_id`` (the document id) and the metadata keys flat. The metadata is
stored but excluded from embedding; the chunk text alone is embedded.

State lives here, in the payload: every point of a document carries its ``ingest_version``
(content hash + model + chunking settings) and ``chunk_count``. A document is complete when all
its points have one version and there are exactly ``chunk_count`` of them.

Creating and checking the collection (and bulk-load mode) is :mod:`ingest.collection_config`;
writing is :class:`ingest.upload.Uploader`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from qdrant_client import QdrantClient, models

from .collection_config import DOC_ID_FIELD

log = logging.getLogger(__name__)

#: LlamaIndex QdrantVectorStore's default dense vector name, so it reads and writes the same field.
VECTOR_NAME = "text-dense"
DEFAULT_PATH = "./qdrant_storage"
DEFAULT_COLLECTION = "documents"
#: uuid5 namespace for point ids: uuid5(NAMESPACE, f"{doc_id}#{chunk_index}").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/sgpt-qdrant/ingest")
STATE_FIELDS = [DOC_ID_FIELD, "ingest_version", "chunk_count", "chunk_index"]
#: Metadata kept out of the LLM prompt (LlamaIndex shows only file_path / file_name).
INTERNAL_KEYS = ["chunk_index", "chunk_count", "char_start", "char_end", "content_hash", "ingest_version", "model"]


class StoreError(RuntimeError):
    """A problem with the store that stops the run before any work: one line, says what to do."""


def point_id(doc_id: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}#{index}"))


@contextlib.contextmanager
def open_client(path: str | None = None, url: str | None = None, api_key: str | None = None,
                prefer_grpc: bool = False, timeout: int | None = None,
                create: bool = True) -> Iterator[QdrantClient | None]:
    """A client that is always closed. ``create=False`` yields None for a missing local folder."""
    if url:
        client = QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout)
    else:
        path = path or DEFAULT_PATH
        if not create and not Path(path).exists():
            yield None
            return
        try:
            client = QdrantClient(path=path)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreError(f"{path}: the Qdrant storage folder is in use by another process "
                                 "(another sgpt-ingest or a client); wait for it or use a Qdrant server") from None
            raise
    try:
        yield client
    finally:
        client.close()


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
    versions: set[str] = field(default_factory=set)
    chunk_counts: set[int] = field(default_factory=set)
    points: int = 0

    def complete(self, version: str) -> bool:
        return self.versions == {version} and self.chunk_counts == {self.points}


def read_state(client: QdrantClient | None, name: str, page: int = 2048) -> dict[str, DocState]:
    """Per document id: the versions, chunk counts and number of points stored."""
    state: dict[str, DocState] = {}
    if client is None or not client.collection_exists(name):
        return state
    offset = None
    while True:
        points, offset = client.scroll(name, limit=page, offset=offset, with_payload=STATE_FIELDS,
                                       with_vectors=False)
        for p in points:
            payload = p.payload or {}
            doc = state.setdefault(str(payload.get(DOC_ID_FIELD)), DocState())
            doc.points += 1
            doc.versions.add(str(payload.get("ingest_version")))
            doc.chunk_counts.add(payload.get("chunk_count", -1))
        if offset is None:
            return state


def make_points(doc_id: str, file_path: str, chunks: Sequence, vectors, *, chunk_count: int, content_hash: str,
                version: str, model: str) -> list[models.PointStruct]:
    """Points whose payload is what LlamaIndex's QdrantVectorStore writes for the same nodes."""
    points = []
    for chunk, vector in zip(chunks, vectors):
        metadata: dict[str, Any] = {
            "file_path": file_path, "file_name": Path(file_path).name,
            "chunk_index": chunk.index, "chunk_count": chunk_count,
            "char_start": chunk.start, "char_end": chunk.end,
            "content_hash": content_hash, "ingest_version": version, "model": model,
        }
        node = TextNode(
            id_=point_id(doc_id, chunk.index), text=chunk.text, metadata=metadata,
            start_char_idx=chunk.start, end_char_idx=chunk.end,
            excluded_embed_metadata_keys=list(metadata), excluded_llm_metadata_keys=list(INTERNAL_KEYS),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)},
        )
        payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=True)
        points.append(models.PointStruct(id=node.node_id, vector={VECTOR_NAME: list(map(float, vector))},
                                         payload=payload))
    return points


def stale_filter(doc_id: str, version: str) -> models.Filter:
    """Points of ``doc_id`` from any other version (old text, or beyond the new chunk count)."""
    return models.Filter(must=[models.FieldCondition(key=DOC_ID_FIELD, match=models.MatchValue(value=doc_id))],
                         must_not=[models.FieldCondition(key="ingest_version", match=models.MatchValue(value=version))])


def docs_filter(doc_ids: Sequence[str]) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=DOC_ID_FIELD, match=models.MatchAny(any=list(doc_ids)))])
