"""Moving documents of an older store to the current ids, once, without re-embedding.

Stores written before document ids held their source (:mod:`ingest.read`) keyed a document by
its path relative to the folder given (``guide.md``, not ``docs/guide.md``) and their points carry
no ``ingest_source``. When a run finds such a document's file under one of its folders, its points
are copied to the new ids (vector and payload as stored, the id fields rewritten), then the old
points are deleted by id. Nothing is embedded again: the version does not depend on the id, so
the document is unchanged afterwards. A kill between the copy and the delete leaves both; the
next run copies again (same ids, same values) and deletes. Old documents whose files this run does
not find are left as they are (a later run over their folder moves them; ``--prune`` never
touches them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import schema
from .read import SourceFile
from .store import DocState

#: Points copied per request.
BATCH = 256


@dataclass
class Plan:
    """Old document key → new document id (the id as the walk made it, surrogates and all)."""

    moves: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.moves)


def _legacy(doc: DocState) -> bool:
    """Written by this ingest (every point has a version) before ids held their source."""
    return doc.sources == {""} and "None" not in doc.versions


def plan(files: Iterable[SourceFile], state: dict[str, DocState]) -> Plan:
    """Which stored documents of the old layout this run's files take over (first file wins)."""
    out = Plan()
    taken = set()
    for f in files:
        key = schema.doc_key(f.doc_id)
        old = schema.legacy_key(f.doc_id.partition("/")[2])
        doc = state.get(old)
        if old in taken or doc is None or not _legacy(doc) or key == old:
            continue
        taken.add(old)
        out.moves[old] = f.doc_id
    return out


def _moved_payload(payload: dict, doc_id: str, new_id: str) -> dict:
    key = schema.doc_key(doc_id)
    payload = dict(payload)
    for name in ("doc_id", "document_id", "ref_doc_id"):
        if name in payload:
            payload[name] = key
    payload[schema.SOURCE_FIELD] = schema.doc_key(schema.source_of(doc_id))
    added = [schema.SOURCE_FIELD]
    version, count = payload.get(schema.VERSION_FIELD), payload.get(schema.COUNT_FIELD)
    if isinstance(version, str) and isinstance(count, int):
        payload[schema.STATE_FIELD] = schema.state_value(key, version, count, payload[schema.SOURCE_FIELD])
        added.append(schema.STATE_FIELD)
    content = payload.get("_node_content")
    if isinstance(content, str):
        try:
            node = json.loads(content)
        except ValueError:
            node = None
        if isinstance(node, dict):
            node["id_"] = new_id
            for field in added:
                if isinstance(node.get("metadata"), dict):
                    node["metadata"][field] = payload[field]
                for keys in ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys"):
                    if isinstance(node.get(keys), list) and field not in node[keys]:
                        node[keys].append(field)
            for rel in (node.get("relationships") or {}).values():
                if isinstance(rel, dict) and "node_id" in rel:
                    rel["node_id"] = key
            payload["_node_content"] = json.dumps(node)
    return payload


def apply(client, collection: str, moves: Plan, state: dict[str, DocState]) -> int:
    """Copy, then delete, each planned document; ``state`` is updated to the new keys. Returns
    the number of points moved."""
    from qdrant_client import models

    moved = 0
    for old, doc_id in moves.moves.items():
        ids = state[old].ids
        new = state.setdefault(schema.doc_key(doc_id), DocState())
        for start in range(0, len(ids), BATCH):
            records = client.retrieve(collection, ids=ids[start:start + BATCH], with_payload=True,
                                      with_vectors=True)
            points = []
            for r in records:
                index = (r.payload or {}).get(schema.INDEX_FIELD)
                if not isinstance(index, int):
                    continue  # not a chunk of ours after all: left as it is
                pid = schema.point_id(doc_id, index)
                points.append(models.PointStruct(id=pid, vector=r.vector, payload=_moved_payload(r.payload, doc_id, pid)))
                if pid not in new.ids:
                    new.ids.append(pid)
                new.indices.add(index)
                new.versions.add(str(r.payload.get(schema.VERSION_FIELD)))
                count = r.payload.get(schema.COUNT_FIELD, -1)
                new.chunk_counts.add(count if isinstance(count, int) else -1)
                new.sources.add(schema.doc_key(schema.source_of(doc_id)))
            if points:
                client.upsert(collection, points=points, wait=True)
        client.delete(collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)
        moved += len(ids)
        del state[old]
    return moved


def rename(moves: Plan, state: dict[str, DocState]) -> None:
    """A dry run: the state as :func:`apply` would leave it, without writing (ids are the old ones;
    only counts and categories are read from it)."""
    for old, doc_id in moves.moves.items():
        doc = state.pop(old)
        state.setdefault(schema.doc_key(doc_id), DocState(doc.ids, doc.indices, doc.versions, doc.chunk_counts,
                                                          {schema.doc_key(schema.source_of(doc_id))}))
