"""ingest stages alone, in-process: chunking, reading, payloads, and the kill-safe write order."""

from __future__ import annotations

import json
import os

import pytest
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest import schema, store
from sgpt_qdrant.ingest.client import open_client
from sgpt_qdrant.ingest.collection_config import CollectionMismatchError, check_collection, ensure_collection
from sgpt_qdrant.chunk import chunk_text
from sgpt_qdrant.ingest.read import SourceFile, Skipped, find_files, html_to_text, read_document, walk
from sgpt_qdrant.ingest.plan import ChunkSettings
from sgpt_qdrant.ingest.run import Run
from sgpt_qdrant.ingest.sync import sync
from sgpt_qdrant.ingest.upload import Uploader
from sgpt_qdrant.testing import gpt2_tokenizer

REF = gpt2_tokenizer()  # an independent tokenizer instance: the reference for token counts


def ref_len(text: str) -> int:
    return len(REF(text.strip(), add_special_tokens=False)["input_ids"])


PROSE = (
    "# Field notes\n\nThe river rose two metres in a single night. By morning the lower meadow was a lake, "
    "and the herons stood in it as if it had always been there.\n\n"
    + " ".join(f"Sentence number {i} talks about the weather, the wind and the long grey clouds." for i in range(40))
    + "\n\n" + "Supercalifragilistic" * 60 + "\n\nÜnïcödé text — with “quotes”, emoji 🌊🌊 and CJK 漢字かな交じり文。"
    + "\n\nShort closing line.\n"
)


@pytest.mark.parametrize("max_tokens,overlap", [(75, 0), (75, 20), (16, 0), (16, 5)])
def test_chunks_fit_the_limit_and_cover_the_text(max_tokens, overlap):
    chunks = chunk_text(PROSE, REF, max_tokens, overlap)
    assert chunks and [c.index for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(PROSE)
    for c in chunks:
        assert c.text == PROSE[c.start:c.end] == c.text.strip() and c.text
        assert ref_len(c.text) <= max_tokens, c.text  # what the encoder embeds: stripped, no BOS/EOS
        for i in range(c.start, c.end):
            covered[i] = True
    missing = [PROSE[i] for i in range(len(PROSE)) if not covered[i] and not PROSE[i].isspace()]
    assert missing == []
    if overlap == 0:  # without overlap the chunks are disjoint and in order
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
    else:
        assert any(b.start < a.end for a, b in zip(chunks, chunks[1:]))


def test_short_paragraphs_are_never_split():
    paragraphs = [f"Paragraph {i} is about topic {i}. It has two sentences." for i in range(12)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, REF, 40)
    for p in paragraphs:  # each paragraph (~13 tokens) lies whole inside exactly one chunk
        assert sum(p in c.text for c in chunks) == 1
    assert len(chunks) < len(paragraphs)  # and small ones are packed together


def test_heading_starts_the_chunk_of_its_section():
    body = " ".join(["This sentence fills the section with ordinary words."] * 5)
    text = f"Intro\n=====\n\n{body}\n\nSecond part\n-----------\n\n{body}"
    chunks = chunk_text(text, REF, 75)
    assert any(c.text.startswith("Second part") for c in chunks)
    assert not any(c.text.endswith("-----------") for c in chunks)


def test_html_text_only():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Head</h1>"
            "<p>One &amp; two.</p><script>var hidden = 1;</script><p>Three</p></body></html>")
    text = html_to_text(html)
    assert "One & two." in text and "Three" in text and "Head" in text
    assert "hidden" not in text and "color" not in text


def test_read_binary_invalid_utf8_and_symlink_loop(tmp_path):
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "img.dat").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (tmp_path / "blob").write_bytes(b"abc\0def")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.md").write_text("# b")
    os.symlink(tmp_path, sub / "loop")  # a directory loop
    os.symlink(tmp_path / "self-link", tmp_path / "self-link")  # a file loop (ELOOP)
    os.mkfifo(tmp_path / "pipe")  # reading it would block
    files = list(find_files([tmp_path]))
    top = tmp_path.name  # ids begin with the folder's own name
    ids = sorted(f.doc_id.removeprefix(f"{top}/") for f in files)
    assert ids == ["a.txt", "bad.txt", "blob", "img.dat", "pipe", "self-link", "sub/b.md"]
    assert sorted(f.doc_id for f in find_files([tmp_path], include=["*.txt", "sub/*"], exclude=["bad*"])) == \
        [f"{top}/a.txt", f"{top}/sub/b.md"]
    for name in ["img.dat", "blob", "self-link", "pipe"]:
        with pytest.raises(Skipped):
            read_document(SourceFile(tmp_path / name, name))
    doc = read_document(SourceFile(tmp_path / "bad.txt", "bad.txt"))
    assert doc.text == "caf\ufffd au lait" and "bad.txt" in doc.warnings[0]


def test_payload_is_what_llamaindex_reads():
    chunks = chunk_text("First sentence here. " * 3 + "\n\n" + "Second paragraph.", REF, 75)
    (point,) = schema.make_points("notes/a.md", "/data/notes/a.md", chunks[:1], [[0.5, 0.25]], chunk_count=1,
                                 content_hash="h", version="v", model="m")
    payload = point.payload
    assert point.id == schema.point_id("notes/a.md", 0)
    for key in ["_node_content", "_node_type", "doc_id", "document_id", "ref_doc_id", "file_path",
                "chunk_index", "char_start", "char_end", "content_hash", "model"]:
        assert key in payload
    assert payload["doc_id"] == payload["ref_doc_id"] == "notes/a.md" and payload["_node_type"] == "TextNode"
    node = metadata_dict_to_node(payload)  # LlamaIndex's own reader
    assert isinstance(node, TextNode) and node.ref_doc_id == "notes/a.md"
    assert node.text == chunks[0].text and node.metadata["file_path"] == "/data/notes/a.md"
    assert node.get_content(MetadataMode.EMBED) == chunks[0].text  # metadata stored, not embedded
    assert "a.md" in node.get_content(MetadataMode.LLM) and "content_hash" not in node.get_content(MetadataMode.LLM)
    assert json.loads(payload["_node_content"])["embedding"] is None


def test_wrong_dimension_is_refused():
    client = QdrantClient(":memory:")
    client.create_collection("c", vectors_config={schema.VECTOR_NAME: models.VectorParams(
        size=7, distance=models.Distance.COSINE)})
    with pytest.raises(CollectionMismatchError, match="7-d Cosine"):
        check_collection(client, "c", 32, vector_name=schema.VECTOR_NAME)
    assert check_collection(client, "c", 7, vector_name=schema.VECTOR_NAME)
    assert not check_collection(client, "other", 7, vector_name=schema.VECTOR_NAME)


# -- the write order survives a stop after any request ------------------------------------------

class _Stop(Exception):
    pass


def _writer(client, **kwargs):
    """Small requests, deletes coalesced and unordered against upserts, as sgpt-ingest writes."""
    return Uploader(client, "c", batch_size=4, delete_batch=2, barrier_deletes=False, **kwargs)


class _DyingWriter(Uploader):
    """Dies before its n-th request, as a SIGKILL between two requests would."""

    def __init__(self, client, n, **kwargs):
        super().__init__(client, "c", batch_size=4, delete_batch=2, barrier_deletes=False, **kwargs)
        self.left = n

    def _call(self, what, request):
        if self.left == 0:
            raise _Stop
        self.left -= 1
        return super()._call(what, request)


def _write_docs(root, docs):
    for p in root.iterdir():
        p.unlink()
    for name, text in docs.items():
        (root / name).write_text(text)


def _run(client, root, encoder, writer=None, prune=True):
    ensure_collection(client, "c", encoder.dimension, vector_name=schema.VECTOR_NAME)
    found = walk([root])
    run = Run(store.read_state(client, "c"), writer or _writer(client), prune_scope=found.covers if prune else None)
    return sync(found.files, ChunkSettings(encoder.tokenizer, encoder.max_length, "tiny"), run, encode=encoder.encode,
                batch_size=3)


def _points(client):
    points, _ = client.scroll("c", limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, [round(x, 5) for x in p.vector[schema.VECTOR_NAME]]) for p in points}


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_stop_after_any_request_then_rerun_equals_clean_run(tmp_path, tiny_encoder):
    long = " ".join(f"Line {i} of the long file says something new." for i in range(60))
    v1 = {"a.txt": long, "b.md": "# B\n\nShort one.", "c.txt": "Will be deleted. " * 30}
    v2 = {"a.txt": long[: len(long) // 3], "b.md": "# B\n\nShort one, edited. " * 40, "d.txt": "New file. " * 50}
    root = tmp_path / "docs"
    root.mkdir()
    _write_docs(root, v2)
    clean = QdrantClient(":memory:")
    _run(clean, root, tiny_encoder)
    expected = _points(clean)
    assert {p["doc_id"] for p, _ in expected.values()} == {"docs/a.txt", "docs/b.md", "docs/d.txt"}
    n = 0
    while True:
        client = QdrantClient(":memory:")
        _write_docs(root, v1)
        _run(client, root, tiny_encoder)
        _write_docs(root, v2)
        try:
            _run(client, root, tiny_encoder, writer=_DyingWriter(client, n))
            finished = True
        except _Stop:
            finished = False
        _run(client, root, tiny_encoder)
        assert _points(client) == expected, f"stopped before request {n}"
        if finished:
            break
        n += 1
    assert n >= 5  # the run above had several requests to be stopped before


def test_embedded_store_keeps_what_it_wrote(tmp_path):
    chunks = chunk_text("One sentence. Another one.", REF, 75)
    points = schema.make_points("a", "/a", chunks, [[1.0, 0.0]], chunk_count=1, content_hash="h", version="v",
                               model="m")
    with open_client(str(tmp_path / "q")) as client:
        ensure_collection(client, "c", 2, vector_name=schema.VECTOR_NAME)
        with _writer(client) as writer:
            writer.upsert(points)
    with open_client(str(tmp_path / "q")) as client:
        assert store.read_state(client, "c")["a"].complete("v")


def test_state_read_on_the_embedded_store_equals_the_one_through_qdrant_client(tmp_path):
    """The embedded store's state comes from Edge's facet counts (complete documents) and its own scroll
    (plain dicts: the rest); qdrant-client's scroll over the same points (in-memory mode) is the
    reference: complete, half-written, foreign and other-share points."""
    from sgpt_qdrant.chunk import Chunk
    from sgpt_qdrant.ingest.edge import EdgeClient

    def doc(doc_id, n, version, keep=None):
        chunks = [Chunk(i, f"chunk {i} of {doc_id}", i * 20, i * 20 + 15, 5) for i in range(n)]
        points = schema.make_points(doc_id, f"/d/{doc_id}", chunks, [[1.0, float(i)] for i in range(n)],
                                    chunk_count=n, content_hash="h", version=version, model="m")
        return [pt for pt in points if keep is None or pt.payload[schema.INDEX_FIELD] in keep]

    points = doc("docs/a.md", 3, "v1") + doc("docs/b.md", 4, "v2", keep={0, 2}) + doc("notes/c.md", 2, "v1")
    points.append(models.PointStruct(id=7, vector={schema.VECTOR_NAME: [0.0, 1.0]}, payload={"other": "app"}))
    ref = QdrantClient(":memory:")
    with EdgeClient(tmp_path / "q") as edge:
        for client in (ref, edge):
            ensure_collection(client, "c", 2, vector_name=schema.VECTOR_NAME)
            client.upsert("c", points)
        def canon(state):  # the order of a document's ids means nothing
            return {k: (sorted(d.ids), d.indices, d.versions, d.chunk_counts, d.sources, d.marks) for k, d in state.items()}

        for owns in (None, lambda key: key.startswith("docs/")):
            got, want = store.read_state(edge, "c", owns=owns, page=2), store.read_state(ref, "c", owns=owns, page=2)
            assert canon(got) == canon(want)
        assert set(got) == {"docs/a.md", "docs/b.md"} and got["docs/a.md"].complete("v1")
        assert not got["docs/b.md"].complete("v2") and len(got["docs/b.md"].marks) == 2
    ref.close()


class _Recording:
    """A writer that records every delete it is given, then passes it on."""

    def __init__(self, writer):
        self.writer, self.deletes = writer, []

    def upsert(self, points):
        self.writer.upsert(points)

    def delete(self, selector):
        self.deletes.append(selector)
        self.writer.delete(selector)

    def close(self):
        self.writer.close()


def test_new_documents_cost_no_delete_and_stale_chunks_are_deleted_by_id(tmp_path, tiny_encoder):
    import uuid

    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/sgpt-qdrant/ingest")
    root = tmp_path / "docs"
    root.mkdir()
    long = " ".join(f"Line {i} of the long file says something new." for i in range(60))
    _write_docs(root, {"a.txt": long, "b.md": "# B\n\nShort one.", "c.txt": "Will be deleted. " * 30})
    client = QdrantClient(":memory:")
    first = _Recording(_writer(client))
    _run(client, root, tiny_encoder, writer=first)
    assert first.deletes == []  # a first load deletes nothing: no cost per stored point
    before = {p["doc_id"]: 0 for p, _ in _points(client).values()}
    for payload, _ in _points(client).values():
        before[payload["doc_id"]] = max(before[payload["doc_id"]], payload["chunk_index"] + 1)

    _write_docs(root, {"a.txt": long[: len(long) // 3], "b.md": "# B\n\nShort one."})
    second = _Recording(_writer(client))
    summary = _run(client, root, tiny_encoder, writer=second)
    a_now = sum(1 for p, _ in _points(client).values() if p["doc_id"] == "docs/a.txt")
    assert 0 < a_now < before["docs/a.txt"]
    deleted = [i for d in second.deletes for i in d]  # lists of ids only, never a filter
    assert all(isinstance(d, list) for d in second.deletes)
    expected = {str(uuid.uuid5(namespace, f"docs/a.txt#{i}")) for i in range(a_now, before["docs/a.txt"])}
    expected |= {str(uuid.uuid5(namespace, f"docs/c.txt#{i}")) for i in range(before["docs/c.txt"])}
    assert sorted(deleted) == sorted(expected)
    assert summary.chunks_deleted == len(expected) and summary.documents_deleted == 1
    assert {p["doc_id"] for p, _ in _points(client).values()} == {"docs/a.txt", "docs/b.md"}


def test_model_fingerprint_follows_the_files_not_the_path(tmp_path, monkeypatch):
    import shutil

    from sgpt_qdrant.ingest.model_id import model_fingerprint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "model"
    (model / "1_Dense").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    (model / "1_Dense" / "pytorch_model.bin").write_bytes(b"\x01" * 32)
    first = model_fingerprint(model)
    assert model_fingerprint(model) == first  # cached, same answer
    shutil.copytree(model, tmp_path / "copy")
    assert model_fingerprint(tmp_path / "copy") == first  # a copy elsewhere is the same model
    (model / "README.md").write_text("notes")
    assert model_fingerprint(model) == first  # not a model file
    (model / "1_Dense" / "pytorch_model.bin").write_bytes(b"\x02" * 32)  # same size, other weights
    assert model_fingerprint(model) != first


@pytest.mark.slow  # loads the model: full suite only
def test_a_run_parses_the_tokenizer_files_once(tmp_path, tiny_model_dir, monkeypatch):
    """The chunker's tokenizer is the encoder's: the files are read once, and the vectors are the
    encoder's own for the chunk texts (an Encoder built apart, with its own tokenizer, is the reference)."""
    import numpy as np

    from sgpt_qdrant import checkpoint as ckpt
    from sgpt_qdrant.engine import Encoder
    from sgpt_qdrant.ingest import IngestOptions, StoreTarget, ingest_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Bees\n\nBees find flowers by scent and colour.\n\nThey dance to say where.\n")
    reference = Encoder(str(tiny_model_dir), device="cpu")
    loads = []
    real = ckpt.load_tokenizer
    monkeypatch.setattr(ckpt, "load_tokenizer", lambda folder: loads.append(folder) or real(folder))
    summary = ingest_paths([docs], store=StoreTarget(str(tmp_path / "q")), model=str(tiny_model_dir),
                           options=IngestOptions(device="cpu", sparse="none"))
    assert summary.chunks_written >= 1 and len(loads) == 1
    with open_client(str(tmp_path / "q")) as client:
        points, _ = client.scroll(schema.DEFAULT_COLLECTION, limit=100, with_payload=True, with_vectors=True)
    texts = [json.loads(p.payload["_node_content"])["text"] for p in points]
    got = np.array([p.vector[schema.VECTOR_NAME] for p in points])
    want = reference.encode(texts)
    want /= np.linalg.norm(want, axis=1, keepdims=True)  # a cosine collection stores unit vectors
    assert np.allclose(got, want, atol=1e-5)


def test_state_read_on_the_embedded_store_reads_no_payload_of_a_complete_document(tmp_path, monkeypatch):
    """Complete documents come from the facet counts alone (no scroll of payloads); a store whose
    points lack the state field (an older version wrote them) is scanned as before, same answer."""
    from sgpt_qdrant.chunk import Chunk
    from sgpt_qdrant.ingest.edge import EdgeClient

    def doc(doc_id, n):
        chunks = [Chunk(i, f"chunk {i}", i * 20, i * 20 + 15, 5) for i in range(n)]
        return schema.make_points(doc_id, f"/d/{doc_id}", chunks, [[1.0, float(i)] for i in range(n)],
                                  chunk_count=n, content_hash="h", version="v", model="m")

    points = doc("docs/a.md", 3) + doc("docs/we\\ird\udcff.md", 2)
    with EdgeClient(tmp_path / "new") as edge:
        ensure_collection(edge, "c", 2, vector_name=schema.VECTOR_NAME)
        edge.upsert("c", points)
        with monkeypatch.context() as m:
            m.setattr(EdgeClient, "iter_payloads", lambda *a, **k: pytest.fail("payloads read"))
            fast = store.read_state(edge, "c")
        assert all(d.complete("v") for d in fast.values())
        # the ids are the ones stored (made from the document id behind the stored key, undecodable bytes too)
        assert sorted(i for d in fast.values() for i in d.ids) == sorted(str(p.id) for p in points)
    old = [models.PointStruct(id=p.id, vector=p.vector, payload={k: v for k, v in p.payload.items()
                                                                  if k != schema.STATE_FIELD}) for p in points]
    with EdgeClient(tmp_path / "old") as edge:
        ensure_collection(edge, "c", 2, vector_name=schema.VECTOR_NAME)
        edge.upsert("c", old)
        slow = store.read_state(edge, "c")
    assert {k: (sorted(d.ids), d.versions, d.chunk_counts, d.sources) for k, d in slow.items()} == \
        {k: (sorted(d.ids), d.versions, d.chunk_counts, d.sources) for k, d in fast.items()}
