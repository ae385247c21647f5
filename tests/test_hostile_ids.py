"""Document ids that never collide across folders, --prune that stays inside this run's folders,
and the one-time re-key of an older store (issue 17 §2)."""

from __future__ import annotations

import json
import uuid

import pytest
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest import IngestError, IngestOptions, ingest_paths, schema

COLLECTION = "c"
#: The point-id namespace, spelled out here as the documented reference (uuid5 of "<doc id>#<index>").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/sgpt-qdrant/ingest")
TEXT = "# Chunking\n\nHow the text is cut into pieces. " + "Every sentence counts here. " * 12


class _NoEmbed:
    """An encoder that must never be asked to embed (a re-key moves vectors, it does not make them)."""

    def __init__(self, encoder):
        self.tokenizer, self.dimension, self.max_length = encoder.tokenizer, encoder.dimension, encoder.max_length
        self.model_name = "tiny"

    def encode(self, texts):
        raise AssertionError(f"asked to embed {len(texts)} texts")


def _run(client, paths, encoder, **options):
    return ingest_paths([str(p) for p in paths], store=client, collection=COLLECTION, encoder=encoder,
                        model="tiny", options=IngestOptions(batch_size=8, **options))


def _stored(client) -> dict:
    points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
    out = {}
    for p in points:
        payload = dict(p.payload)
        if "_node_content" in payload:
            payload["_node_content"] = json.loads(payload["_node_content"])
        out[str(p.id)] = (payload, p.vector[schema.VECTOR_NAME])
    return out


def _docs(client) -> set[str]:
    return {payload["doc_id"] for payload, _ in _stored(client).values()}


def test_two_folders_with_the_same_file_keep_both_documents(tmp_path, tiny_encoder):
    for folder in ("docs", "otherdocs"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "chunking.md").write_text(TEXT + folder)
    client = QdrantClient(":memory:")
    first = _run(client, [tmp_path / "docs"], tiny_encoder)
    second = _run(client, [tmp_path / "otherdocs"], tiny_encoder)
    assert second.new == 1 and second.changed == 0 and second.chunks_deleted == 0
    assert _docs(client) == {"docs/chunking.md", "otherdocs/chunking.md"}
    assert len(_stored(client)) == first.chunks_written + second.chunks_written


def test_ids_are_the_same_from_another_checkout_and_for_a_file_given_by_name(tmp_path, tiny_encoder):
    for checkout in ("one", "two"):
        (tmp_path / checkout / "docs").mkdir(parents=True)
        (tmp_path / checkout / "docs" / "a.md").write_text(TEXT * 3)
    stores = []
    for given in (tmp_path / "one" / "docs", tmp_path / "two" / "docs", tmp_path / "two" / "docs" / "a.md"):
        client = QdrantClient(":memory:")
        summary = _run(client, [given], tiny_encoder)
        stores.append(set(_stored(client)))
    n = summary.chunks_written
    assert n >= 2
    reference = {str(uuid.uuid5(NAMESPACE, f"docs/a.md#{i}")) for i in range(n)}
    assert stores[0] == stores[1] == stores[2] == reference


def test_source_names_the_ids_and_is_checked(tmp_path, tiny_encoder):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(TEXT)
    client = QdrantClient(":memory:")
    _run(client, [tmp_path / "docs"], tiny_encoder, source="manual")
    assert _docs(client) == {"manual/a.md"}
    assert {payload[schema.SOURCE_FIELD] for payload, _ in _stored(client).values()} == {"manual"}
    for bad in ("", "a/b", ".."):
        with pytest.raises(IngestError, match="--source"):
            _run(client, [tmp_path / "docs"], tiny_encoder, source=bad)


def _llamaindex_node(client, doc_id: str) -> str:
    """A point as a LlamaIndex app inserts it (a doc_id, none of this ingest's keys)."""
    pid = str(uuid.uuid4())
    client.upsert(COLLECTION, points=[models.PointStruct(
        id=pid, vector={schema.VECTOR_NAME: [0.1] * 32},
        payload={"doc_id": doc_id, "document_id": doc_id, "ref_doc_id": doc_id, "_node_type": "TextNode",
                 "_node_content": json.dumps({"id_": pid, "text": "an owl note"})})])
    return pid


def test_prune_removes_only_documents_of_this_runs_folders_that_are_gone(tmp_path, tiny_encoder):
    for folder, names in (("docs", ["a.md", "b.md", "skip.txt"]), ("otherdocs", ["a.md", "c.md"])):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_text(TEXT + name)
    client = QdrantClient(":memory:")
    _run(client, [tmp_path / "docs"], tiny_encoder)
    _run(client, [tmp_path / "otherdocs"], tiny_encoder)
    owl = _llamaindex_node(client, "my-owl-note")
    (tmp_path / "docs" / "b.md").unlink()
    (tmp_path / "docs" / "skip.txt").unlink()
    # only *.md this time: the .txt document is outside what this run looks at, so it is kept
    summary = _run(client, [tmp_path / "docs"], tiny_encoder, prune=True, include=["*.md"])
    assert summary.documents_deleted == 1
    assert _docs(client) == {"docs/a.md", "docs/skip.txt", "otherdocs/a.md", "otherdocs/c.md", "my-owl-note"}
    assert owl in _stored(client)
    dry = _run(client, [tmp_path / "docs"], tiny_encoder, prune=True, dry_run=True)
    assert dry.documents["pruned"] == ["docs/skip.txt"]


def _to_old_layout(client) -> None:
    """Rewrite the store as an ingest before source-named ids wrote it: doc id = path relative to
    the folder, point id uuid5 of that, no ingest_source key anywhere."""
    points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
    client.delete(COLLECTION, points_selector=models.PointIdsList(points=[p.id for p in points]))
    old = []
    for p in points:
        payload = dict(p.payload)
        rel = payload["doc_id"].split("/", 1)[1]
        pid = str(uuid.uuid5(NAMESPACE, f"{rel}#{payload['chunk_index']}"))
        node = json.loads(payload["_node_content"])
        node["id_"] = pid
        node["relationships"]["1"]["node_id"] = rel
        for field in (schema.SOURCE_FIELD, schema.STATE_FIELD):  # neither existed then
            del node["metadata"][field]
            for keys in ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys"):
                node[keys].remove(field)
            del payload[field]
        payload.update(doc_id=rel, document_id=rel, ref_doc_id=rel, _node_content=json.dumps(node))
        old.append(models.PointStruct(id=pid, vector=p.vector, payload=payload))
    client.upsert(COLLECTION, points=old)


def test_an_older_store_is_rekeyed_once_without_embedding(tmp_path, tiny_encoder):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text(TEXT)
    (docs / "sub" / "b.md").write_text(TEXT + " sub")
    clean = QdrantClient(":memory:")
    _run(clean, [docs], tiny_encoder)
    expected = _stored(clean)
    old = QdrantClient(":memory:")
    _run(old, [docs], tiny_encoder)
    _to_old_layout(old)
    assert _docs(old) == {"a.md", "sub/b.md"}
    copied = {(p["doc_id"], p["chunk_index"]): v for p, v in _stored(old).values()}
    owl = _llamaindex_node(old, "sub/b.md-notes")
    messages = []
    dry = ingest_paths([str(docs)], store=old, collection=COLLECTION, encoder=_NoEmbed(tiny_encoder),
                       model="tiny", options=IngestOptions(dry_run=True, prune=True), on_message=messages.append)
    assert dry.unchanged == 2 and dry.documents["pruned"] == [] and _docs(old) == {"a.md", "sub/b.md",
                                                                                 "sub/b.md-notes"}
    summary = ingest_paths([str(docs)], store=old, collection=COLLECTION, encoder=_NoEmbed(tiny_encoder),
                           model="tiny", options=IngestOptions(prune=True), on_message=messages.append)
    assert summary.unchanged == 2 and summary.chunks_written == 0 and summary.documents_deleted == 0
    assert [m for m in messages if m.startswith("re-keyed")] == [
        f"re-keyed 2 documents ({len(expected)} points) of an older store to ids that name their folder "
        "(e.g. docs/guide.md), once; nothing re-embedded"]
    got = _stored(old)
    del got[owl]
    assert {i: p for i, (p, _) in got.items()} == {i: p for i, (p, _) in expected.items()}
    for p, v in got.values():  # the stored vector, copied (a cosine store renormalises it: float rounding)
        assert max(abs(a - b) for a, b in zip(v, copied[(p["doc_id"].removeprefix("docs/"), p["chunk_index"])])) < 1e-6
    again = ingest_paths([str(docs)], store=old, collection=COLLECTION, encoder=_NoEmbed(tiny_encoder),
                         model="tiny", options=IngestOptions(prune=True), on_message=messages.append)
    assert again.unchanged == 2 and sum(m.startswith("re-keyed") for m in messages) == 1


def test_backslash_and_undecodable_byte_names_are_two_documents(tmp_path, tiny_encoder):
    import os

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "x\\xff.txt").write_text(TEXT + " literal")
    with open(os.path.join(os.fsencode(docs), b"x\xff.txt"), "w") as f:
        f.write(TEXT + " byte")
    client = QdrantClient(":memory:")
    summary = _run(client, [docs], tiny_encoder)
    assert summary.new == 2 and summary.failed == 0
    assert _docs(client) == {"docs/x\\xff.txt", "docs/x\\\\xff.txt"}
