"""What one ingested chunk looks like in Qdrant: the vector name, payload keys and point id.

The one home of the storage schema, so the writer, the state reader, the collection check and
the query examples agree. Payloads are made by LlamaIndex itself (``node_to_metadata_dict`` of a
``TextNode``), so ``QdrantVectorStore`` reads them back as nodes: ``_node_content``,
``_node_type``, ``doc_id`` / ``document_id`` / ``ref_doc_id`` (the document id) and the metadata
keys flat. The metadata is stored but excluded from embedding; the chunk text alone is embedded.

A document id is ``<source>/<path relative to its root>`` (:mod:`ingest.read`), as
``os.fsdecode`` gives it: a name that is not valid UTF-8 holds surrogate escapes (``'\\udcff'``),
which JSON and Qdrant cannot carry. The point id is therefore made from the name's *bytes*, and
what is stored is :func:`doc_key`, the name with undecodable bytes written as ``\\xff`` and a
literal backslash as ``\\\\`` (so ``x\\xff.txt`` and a file named ``x\\\\xff.txt`` stay two documents).
Every point also carries its source (``ingest_source``): what marks a point as written by this
ingest in the current id layout, the only points ``--prune`` may remove.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: LlamaIndex QdrantVectorStore's default dense vector name, so it reads and writes the same field.
VECTOR_NAME = "text-dense"
#: LlamaIndex's sparse vector name (hybrid mode); BM25 with the IDF modifier, see :mod:`ingest.sparse`.
SPARSE_VECTOR_NAME = "text-sparse-new"
#: What LlamaIndex's QdrantVectorStore filters and deletes by.
DOC_ID_FIELD = "doc_id"
DEFAULT_COLLECTION = "documents"
#: uuid5 namespace for point ids: uuid5(NAMESPACE, b"<doc id bytes>#<chunk index>").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/sgpt-qdrant/ingest")
#: Payload keys the state reader needs (see :mod:`ingest.store`).
VERSION_FIELD, COUNT_FIELD, INDEX_FIELD = "ingest_version", "chunk_count", "chunk_index"
#: The document id's first part (the folder's name or --source); absent on points of an older layout.
SOURCE_FIELD = "ingest_source"
STATE_FIELDS = [DOC_ID_FIELD, VERSION_FIELD, COUNT_FIELD, INDEX_FIELD, SOURCE_FIELD]
#: The document's state in one keyword (``[doc_id, version, chunk_count, source]`` as JSON), indexed:
#: a run reads every document's state from Edge's facet counts of it (:func:`ingest.store.read_state`)
#: without touching a payload.
STATE_FIELD = "ingest_state"
#: Metadata kept out of the LLM prompt (LlamaIndex shows only file_path / file_name).
#: Hash of what a point holds beyond its version (text, file path, model name): with the version it
#: says a stored chunk equals the one a fresh run would write, so a resumed run keeps it.
CHUNK_HASH_FIELD = "chunk_hash"
RESUME_FIELDS = [*STATE_FIELDS, CHUNK_HASH_FIELD]
INTERNAL_KEYS = [INDEX_FIELD, COUNT_FIELD, "char_start", "char_end", "content_hash", VERSION_FIELD, "model",
                 CHUNK_HASH_FIELD, SOURCE_FIELD, STATE_FIELD]


def name_bytes(name: str) -> bytes:
    """The bytes of a file name as the OS gave them (surrogate escapes back to raw bytes)."""
    return name.encode("utf-8", "surrogateescape")


def doc_key(doc_id: str) -> str:
    """The document id as stored: valid Unicode, undecodable bytes as ``\\xNN``, ``\\`` doubled.

    Identical to ``doc_id`` for every UTF-8 name without a backslash; one-to-one for all names."""
    return name_bytes(doc_id.replace("\\", "\\\\")).decode("utf-8", "backslashreplace")


def doc_id_of(key: str) -> str:
    """The document id a :func:`doc_key` was made from (its inverse)."""
    if "\\" not in key:
        return key
    out, i = bytearray(), 0
    while i < len(key):
        if key.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif key.startswith("\\x", i) and len(key) >= i + 4:
            out.append(int(key[i + 2:i + 4], 16))
            i += 4
        else:
            out += key[i].encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def state_value(key: str, version: str, chunk_count: int, source: str) -> str:
    """What :data:`STATE_FIELD` holds for every point of a document written whole at ``version``."""
    return json.dumps([key, version, chunk_count, source], ensure_ascii=False, separators=(",", ":"))


def legacy_key(doc_id: str) -> str:
    """:func:`doc_key` as stores before ``ingest_source`` wrote it (backslashes not doubled)."""
    return name_bytes(doc_id).decode("utf-8", "backslashreplace")


def source_of(doc_id: str) -> str:
    """The source part of a document id (``docs`` of ``docs/guide.md``)."""
    return doc_id.partition("/")[0]


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def display(path: str | Path) -> str:
    """A path safe to print and to put in JSON: undecodable bytes and control characters (a
    terminal escape sequence in a file name) as ``\\xNN``."""
    return name_bytes(str(path)).decode("utf-8", "backslashreplace").translate(_CONTROL)


def point_id(doc_id: str, index: int) -> str:
    """uuid5 of the document id's bytes and the chunk index: the same chunk always overwrites itself.

    Equal to ``uuid5(NAMESPACE, f"{doc_id}#{index}")`` for UTF-8 names (so stores written
    before non-UTF-8 names were supported keep their ids)."""
    digest = hashlib.sha1(NAMESPACE.bytes + name_bytes(doc_id) + f"#{index}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def chunk_hash(text: str, file_path: str, model: str) -> str:
    """What :data:`CHUNK_HASH_FIELD` holds for a chunk: sha256 of the rest of its payload, 16 hex digits."""
    return hashlib.sha256(f"{text}\0{display(file_path)}\0{model}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def make_points(doc_id: str, file_path: str, chunks: Sequence, vectors, *, chunk_count: int, content_hash: str,
                version: str, model: str, sparse: str = "none") -> list:
    """Points whose payload is what LlamaIndex's QdrantVectorStore writes for the same nodes.

    ``sparse="bm25"`` adds each chunk's BM25 vector (:mod:`ingest.sparse`) beside the dense one."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict
    from qdrant_client import models

    key, file_path = doc_key(doc_id), display(file_path)
    state = state_value(key, version, chunk_count, doc_key(source_of(doc_id)))
    sparse_vectors = _sparse(sparse, [c.text for c in chunks])
    points = []
    for i, (chunk, vector) in enumerate(zip(chunks, vectors)):
        metadata: dict[str, Any] = {
            "file_path": file_path, "file_name": Path(file_path).name,
            INDEX_FIELD: chunk.index, COUNT_FIELD: chunk_count,
            "char_start": chunk.start, "char_end": chunk.end,
            "content_hash": content_hash, VERSION_FIELD: version, "model": model,
            CHUNK_HASH_FIELD: chunk_hash(chunk.text, file_path, model),
            SOURCE_FIELD: doc_key(source_of(doc_id)),
            STATE_FIELD: state,
        }
        metadata.update(getattr(chunk, "meta", None) or {})  # where in the file: page_label, slide, chapter
        node = TextNode(
            id_=point_id(doc_id, chunk.index), text=chunk.text, metadata=metadata,
            start_char_idx=chunk.start, end_char_idx=chunk.end,
            excluded_embed_metadata_keys=list(metadata), excluded_llm_metadata_keys=list(INTERNAL_KEYS),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=key)},
        )
        payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=True)
        vectors_of: dict[str, Any] = {VECTOR_NAME: _floats(vector)}
        if sparse_vectors is not None:
            vectors_of[SPARSE_VECTOR_NAME] = sparse_vectors[i]
        points.append(models.PointStruct(id=node.node_id, vector=vectors_of, payload=payload))
    return points


def _sparse(mode: str, texts: list[str]) -> list | None:
    if mode == "none":
        return None
    from . import sparse

    sparse.check_mode(mode)
    return sparse.document_vectors(texts)


def _floats(vector) -> list[float]:
    """Plain floats for the request: numpy's tolist() converts in C, not value by value in Python."""
    return vector.tolist() if hasattr(vector, "tolist") else [float(x) for x in vector]
