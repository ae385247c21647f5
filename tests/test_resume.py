"""A resumed run embeds only the chunks a stopped run did not store, and still ends at the clean-run store."""

from __future__ import annotations

from collections import Counter

import pytest
from qdrant_client import QdrantClient

from sgpt_qdrant.ingest import schema, store
from sgpt_qdrant.ingest.collection_config import ensure_collection
from sgpt_qdrant.ingest.read import find_files, walk
from sgpt_qdrant.ingest.plan import ChunkSettings
from sgpt_qdrant.ingest.run import Run
from sgpt_qdrant.ingest.sync import sync
from sgpt_qdrant.ingest.upload import Uploader
from test_ingest_units import _DyingWriter, _Stop  # stops after n requests, as a Ctrl-C would

LONG = " ".join(f"Line {i} of the long file says something new about the harbour." for i in range(80))
LONG_V2 = " ".join(f"Row {i} of the edited file tells another story about the dunes." for i in range(70))


class _Counting:
    """The encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder):
        self.encoder, self.texts = encoder, []

    def __call__(self, texts):
        self.texts += texts
        return self.encoder.encode(texts)


def _run(client, root, encoder, writer=None):
    ensure_collection(client, "c", encoder.dimension, vector_name=schema.VECTOR_NAME)
    encode = _Counting(encoder)
    found = walk([root])
    run = Run(store.read_state(client, "c"), writer or Uploader(client, "c", batch_size=4, barrier_deletes=False),
              prune_scope=found.covers)
    summary = sync(found.files, ChunkSettings(encoder.tokenizer, encoder.max_length, "tiny"), run, encode=encode,
                   batch_size=3)
    return summary, encode.texts


def _points(client):
    points, _ = client.scroll("c", limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, [round(x, 5) for x in p.vector[schema.VECTOR_NAME]]) for p in points}


def _write(root, docs):
    for p in root.iterdir():
        p.unlink()
    for name, text in docs.items():
        (root / name).write_text(text)


def _stop_then_resume(tmp_path, encoder, before: dict | None, after: dict, stop_after: int):
    root = tmp_path / "docs"
    root.mkdir(exist_ok=True)
    _write(root, after)
    clean = QdrantClient(":memory:")
    clean_summary, _ = _run(clean, root, encoder)
    client = QdrantClient(":memory:")
    if before is not None:
        _write(root, before)
        _run(client, root, encoder)
        _write(root, after)
    try:
        _run(client, root, encoder, writer=_DyingWriter(client, stop_after, max_in_flight=1))
        raise AssertionError("the run was meant to stop")
    except _Stop:
        pass
    return clean, clean_summary, client, root


@pytest.mark.slow
def test_a_run_stopped_mid_document_embeds_only_the_missing_chunks(tmp_path, tiny_encoder):
    clean, clean_summary, client, root = _stop_then_resume(tmp_path, tiny_encoder, None, {"long.txt": LONG},
                                                           stop_after=2)
    total = clean_summary.chunks_written
    stored = client.count("c").count
    assert 0 < stored < total  # stopped inside the one document
    summary, embedded = _run(client, root, tiny_encoder)
    assert len(embedded) == summary.chunks_written == total - stored
    assert summary.chunks_kept == stored
    clean_texts = {p["_node_content"] for p, _ in _points(clean).values()}
    assert len(clean_texts) == total
    assert _points(client) == _points(clean)


@pytest.mark.slow
def test_a_changed_document_stopped_halfway_keeps_only_chunks_of_the_new_version(tmp_path, tiny_encoder):
    clean, clean_summary, client, root = _stop_then_resume(
        tmp_path, tiny_encoder, {"long.txt": LONG, "b.md": "# B\n\nShort one."},
        {"long.txt": LONG_V2, "b.md": "# B\n\nShort one."}, stop_after=3)
    versions = Counter(p["ingest_version"] for p, _ in _points(client).values() if p["doc_id"] == "docs/long.txt")
    new_version = next(p["ingest_version"] for p, _ in _points(clean).values() if p["doc_id"] == "docs/long.txt")
    at_new = versions[new_version]
    long_total = sum(1 for p, _ in _points(clean).values() if p["doc_id"] == "docs/long.txt")
    assert 0 < at_new < long_total and len(versions) == 2  # half old, half new
    summary, embedded = _run(client, root, tiny_encoder)
    assert len(embedded) == long_total - at_new
    assert summary.unchanged == 1 and summary.changed == 1
    assert _points(client) == _points(clean)


def test_a_chunk_stored_with_other_text_is_embedded_again(tmp_path, tiny_encoder):
    """Same id and version but a different chunk hash (another model name stored): not kept."""
    clean, clean_summary, client, root = _stop_then_resume(tmp_path, tiny_encoder, None, {"long.txt": LONG},
                                                           stop_after=2)
    ensure_collection(client, "c", tiny_encoder.dimension, vector_name=schema.VECTOR_NAME)
    state = store.read_state(client, "c")
    doc = state["docs/long.txt"]
    assert doc.marks and not doc.complete(next(iter(doc.versions)))
    encode = _Counting(tiny_encoder)
    summary = sync(list(find_files([root])), ChunkSettings(tiny_encoder.tokenizer, tiny_encoder.max_length,
                                                           "another-name"),
                   Run(state, Uploader(client, "c", batch_size=4)), encode=encode, batch_size=3)
    assert summary.chunks_kept == 0 and len(encode.texts) == clean_summary.chunks_written


def test_a_complete_document_keeps_no_marks(tmp_path, tiny_encoder):
    root = tmp_path / "docs"
    root.mkdir()
    _write(root, {"long.txt": LONG})
    client = QdrantClient(":memory:")
    _run(client, root, tiny_encoder)
    doc = store.read_state(client, "c")["docs/long.txt"]
    assert doc.points > 1 and doc.marks == {}
