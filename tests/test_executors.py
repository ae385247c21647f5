"""One scenario through both executors: in-process (:func:`ingest.sync.sync`) and the Ray
executor's driver and stages (:func:`ingest.distributed.distribute` with the real row conversion,
``_prepare`` → ``embed_batch`` → ``part_of``) run by an in-process stand-in for Ray Data that hands
batches back out of order. Both must end with the same summary, messages and stored points, which
must be what the scenario says (counted by hand), on every run of the quick loop; the slow
tests/test_ray_ingest.py checks the same on a real Ray.

The scenario: unchanged, changed (shorter: stale points to delete), new, deleted with --prune, a
document id given by two folders, a file that fails, a file that is skipped.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
# make_points' imports, here so that they count in collection, not in the first test's time
from llama_index.core.vector_stores.utils import node_to_metadata_dict  # noqa: F401
from qdrant_client import QdrantClient

from sgpt_qdrant.ingest import distributed, schema, store
from sgpt_qdrant.ingest.collection_config import ensure_collection
from sgpt_qdrant.ingest.plan import ChunkSettings
from sgpt_qdrant.ingest.read import walk
from sgpt_qdrant.ingest.run import Run
from sgpt_qdrant.ingest.sync import sync
from sgpt_qdrant.ingest.upload import Uploader
from sgpt_qdrant.testing import gpt2_tokenizer

DIM, MAX_TOKENS, TIMING = 8, 20, {"seconds", "embed_seconds", "model_load_seconds"}
GPT2 = gpt2_tokenizer()


class _Tokenizer:
    """GPT-2's tokenizer, failing on the word BOOM: a file whose chunking fails."""

    def __call__(self, text, **kwargs):
        if "BOOM" in text:
            raise ValueError("the tokenizer refused this text")
        return GPT2(text, **kwargs)

    def __getattr__(self, name):
        if name == "backend_tokenizer":  # no Rust core to count on: the chunker calls this wrapper
            raise AttributeError(name)
        return getattr(GPT2, name)


class _HashEncoder:
    """Vectors from each text's hash: the same text, the same vector, whichever executor asks."""

    dimension = DIM

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += texts
        return np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], np.uint8) + 1.0 for t in texts],
                        dtype=np.float32)


def _sentences(what: str, n: int) -> str:
    return " ".join(f"Sentence {i} says {what}." for i in range(n))


V1 = {"one/docs/keep.md": "# Keep\n\nThis file never changes.", "one/docs/edit.md": _sentences("the old text", 30),
      "one/docs/gone.md": _sentences("a file that goes", 5), "one/docs/same.md": "The first folder's copy."}
V2 = {"one/docs/keep.md": V1["one/docs/keep.md"], "one/docs/edit.md": _sentences("the new text", 8),
      "one/docs/same.md": V1["one/docs/same.md"], "one/docs/new.md": _sentences("something new", 12),
      "one/docs/bad.md": "This BOOM file cannot be chunked.", "one/docs/empty.txt": "",
      "two/docs/same.md": "The second folder's copy: the same id, docs/same.md."}


def _write(root, files: dict) -> list:
    for path in root.rglob("*"):
        if path.is_file():
            path.unlink()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    inputs = [root / "one" / "docs", root / "two" / "docs"]
    for folder in inputs:
        folder.mkdir(parents=True, exist_ok=True)
    return inputs


def _store(root, settings: ChunkSettings) -> QdrantClient:
    """A store holding V1, written in-process."""
    client = QdrantClient(":memory:")
    ensure_collection(client, "c", DIM, vector_name=schema.VECTOR_NAME)
    found = walk(_write(root, V1))
    sync(found.files, settings, Run({}, Uploader(client, "c")), encode=_HashEncoder().encode, batch_size=4)
    return client


def _points(client) -> dict:
    points, _ = client.scroll("c", limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, [round(x, 6) for x in p.vector[schema.VECTOR_NAME]]) for p in points}


def _stand_in_for_ray(settings: ChunkSettings, encoder, *, workers_write: QdrantClient | None = None):
    """``distribute``'s execute: Ray Data's stages in this process, rows as Ray's numpy batches of
    three, the batches handed back shuffled (as an actor pool finishes them); with ``workers_write``
    each batch's points are written there, as the sink's write tasks do, and only counts come back."""
    def execute(items):
        rows = [row for item in items for row in distributed._prepare(item, settings=settings)]
        batches = [rows[i:i + 3] for i in range(0, len(rows), 3)]
        random.Random(7).shuffle(batches)
        for rows in batches:
            batch = {k: np.array([row[k] for row in rows]) for k in rows[0]}
            part = distributed.part_of(distributed.embed_batch(encoder, "node/actor", batch), settings)
            if workers_write is not None:
                with Uploader(workers_write, "c") as uploader:
                    uploader.upsert(part.points)
                part.points, part.remote, part.written_remotely = [], True, len(part.points)
            yield part
    return execute


def _run_v2(tmp_path, executor: str):
    settings = ChunkSettings(_Tokenizer(), MAX_TOKENS, "tiny")
    client = _store(tmp_path, settings)
    found = walk(_write(tmp_path, V2))
    messages: list[str] = []
    run = Run(store.read_state(client, "c"), Uploader(client, "c", batch_size=4, barrier_deletes=False),
              prune_scope=found.covers, on_message=messages.append)
    encoder = _HashEncoder()
    if executor == "in-process":
        summary = sync(found.files, settings, run, encode=encoder.encode, batch_size=4)
    else:
        distribute_to = client if executor == "ray, workers write" else None
        execute = _stand_in_for_ray(settings, encoder, workers_write=distribute_to)
        per_actor = distributed.distribute(found.files, settings, run, execute)
        assert per_actor == {"node/actor": len(encoder.texts)}
        summary = run.finish()
    return summary, sorted(messages), _points(client), sorted(encoder.texts), run


@pytest.mark.parametrize("executor", ["ray, driver writes", "ray, workers write"])
def test_both_executors_do_the_same_to_the_store_and_say_the_same(tmp_path, executor):
    ref, ref_messages, ref_points, ref_texts, _ = _run_v2(tmp_path, "in-process")
    got, got_messages, got_points, got_texts, run = _run_v2(tmp_path, executor)  # the same files again

    # by hand: 7 files; keep + same (first copy) unchanged, edit changed, new new, gone pruned;
    # bad.md fails to chunk, two/docs/same.md gives docs/same.md again, empty.txt has no text
    assert (ref.files_seen, ref.new, ref.changed, ref.unchanged, ref.skipped, ref.failed, ref.ingested,
            ref.documents_deleted) == (7, 1, 1, 2, 1, 2, 2, 1)
    assert [f.split(": ", 1)[1] for f in ref.failures] == [
        "cannot chunk: the tokenizer refused this text",
        "document id 'docs/same.md' already given by another input; ingest the folders into separate collections"]
    stored_docs = {payload["doc_id"] for payload, _ in ref_points.values()}
    assert stored_docs == {"docs/keep.md", "docs/edit.md", "docs/same.md", "docs/new.md"}
    edit_chunks = sum(payload["doc_id"] == "docs/edit.md" for payload, _ in ref_points.values())
    assert ref.chunks_deleted > 0 and ref.chunks_written == len(ref_texts) > edit_chunks > 0

    same = {k: v for k, v in ref.to_dict().items() if k not in TIMING}
    assert {k: v for k, v in got.to_dict().items() if k not in TIMING} == same
    assert got_messages == ref_messages and got_texts == ref_texts
    assert got_points == ref_points
    if executor == "ray, workers write":  # what ingest.verify checks: every point of the rewritten documents
        assert set(run.written_elsewhere) == {"docs/edit.md", "docs/new.md"}
        assert {i for ids in run.written_elsewhere.values() for i in ids} == {
            pid for pid, (payload, _) in got_points.items() if payload["doc_id"] in ("docs/edit.md", "docs/new.md")}
