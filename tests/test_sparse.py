"""BM25 sparse vectors: hand-computed values and indices, Qdrant's IDF scoring, the collection layout
LlamaIndex's hybrid mode reads, and sgpt-ingest --sparse (creation, refusal, version key)."""

from __future__ import annotations

import json
import math

import pytest
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest import IngestError, IngestOptions, StoreTarget, ingest_paths
from sgpt_qdrant.ingest import sparse
from sgpt_qdrant.ingest.client import open_client
from sgpt_qdrant.ingest.schema import SPARSE_VECTOR_NAME, VECTOR_NAME


def _tf_part(tf: int, length: int) -> float:
    k, b, avg = 1.2, 0.75, sparse.AVG_LEN
    return tf * (k + 1) / (tf + k * (1 - b + b * length / avg))


def test_document_and_query_vectors_by_hand():
    mmh3 = pytest.importorskip("mmh3")
    # "the" is a stopword; foxes/fox -> fox, runs/run -> run (Snowball); length 5 after stopwords
    text = "Foxes run; the fox RUNS fast."
    doc = sparse.document_vectors([text])[0]
    want = {abs(mmh3.hash("fox")): _tf_part(2, 5), abs(mmh3.hash("run")): _tf_part(2, 5),
            abs(mmh3.hash("fast")): _tf_part(1, 5)}
    assert sorted(doc.indices) == sorted(want)
    for i, v in zip(doc.indices, doc.values):
        assert v == pytest.approx(want[i], rel=1e-6)
    query = sparse.query_vector("running foxes")
    assert sorted(query.indices) == sorted([abs(mmh3.hash("run")), abs(mmh3.hash("fox"))])
    assert query.values == [1.0, 1.0]
    # identifiers split on underscores and dots
    assert len(sparse.query_vector("ERR_CONNECTION_REFUSED").indices) == 3


def test_ingest_side_and_query_side_agree_exactly():
    texts = ["Qdrant's sparse vectors with the IDF modifier.", "ERR_CONNECTION_REFUSED on port 6333", ""]
    first = sparse.document_vectors(texts)
    again = [sparse.llama_sparse_doc_fn([t]) for t in texts]  # another call, as a LlamaIndex app makes it
    for vector, (indices, values) in zip(first, again):
        assert vector.indices == indices[0] and vector.values == values[0]
    assert first[2].indices == []
    for text, doc in zip(texts, first):  # the query's tokens are exactly the document's
        assert sorted(sparse.query_vector(text).indices) == sorted(doc.indices)


def test_qdrant_idf_modifier_scores_bm25():
    """Qdrant computes idf = ln(1 + (N - n + 0.5) / (n + 0.5)) per query term over the collection."""
    docs = ["the lighthouse keeper", "a lighthouse on the rocks by the lighthouse", "tides and the moon",
            "keeper of keys"]
    client = QdrantClient(":memory:")
    client.create_collection("c", vectors_config={}, sparse_vectors_config={SPARSE_VECTOR_NAME: sparse.sparse_params()})
    client.upsert("c", [models.PointStruct(id=i, vector={SPARSE_VECTOR_NAME: v})
                        for i, v in enumerate(sparse.document_vectors(docs))])
    hits = client.query_points("c", query=sparse.query_vector("lighthouse moon"), using=SPARSE_VECTOR_NAME).points

    def idf(n):
        return math.log(1 + (len(docs) - n + 0.5) / (n + 0.5))

    # stopwords out, stems: [lighthous keeper] [lighthous rock lighthous] [tide moon] [keeper key]
    want = {0: idf(2) * _tf_part(1, 2), 1: idf(2) * _tf_part(2, 3), 2: idf(1) * _tf_part(1, 2)}
    assert {h.id: h.score for h in hits} == pytest.approx(want, rel=1e-5)


def test_collection_layout_is_what_llamaindex_hybrid_reads(tmp_path, tiny_encoder, tiny_model_dir):
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from llama_index.vector_stores.qdrant.base import DEFAULT_SPARSE_VECTOR_NAME

    assert SPARSE_VECTOR_NAME == DEFAULT_SPARSE_VECTOR_NAME
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("The lighthouse keeper lit the lamp at dusk.\n")
    (tmp_path / "docs" / "b.md").write_text("Error ERR_CONNECTION_REFUSED means the server is down.\n")
    client = QdrantClient(":memory:")
    ingest_paths([tmp_path / "docs"], store=client, encoder=tiny_encoder, model=str(tiny_model_dir))
    info = client.get_collection("documents")
    assert info.config.params.sparse_vectors[SPARSE_VECTOR_NAME].modifier == models.Modifier.IDF
    store = QdrantVectorStore(client=client, collection_name="documents", enable_hybrid=True,
                              sparse_doc_fn=sparse.llama_sparse_doc_fn, sparse_query_fn=sparse.llama_sparse_query_fn)
    assert store.sparse_vector_name == SPARSE_VECTOR_NAME
    query = "connection refused"
    q = VectorStoreQuery(query_str=query, query_embedding=tiny_encoder.encode([query])[0].tolist(),
                         similarity_top_k=1, mode=VectorStoreQueryMode.SPARSE)
    result = store.query(q)
    assert [n.ref_doc_id for n in result.nodes] == ["docs/b.md"]  # ids name their folder
    q.mode = VectorStoreQueryMode.HYBRID
    assert {n.ref_doc_id for n in store.query(q).nodes} <= {"docs/a.md", "docs/b.md"}
    # what LlamaIndex writes for a node of its own is what sgpt-ingest stores for the same text
    from llama_index.core.schema import TextNode

    node = TextNode(text="The lighthouse keeper lit the lamp at dusk.", embedding=[0.1] * tiny_encoder.dimension)
    store.add([node])
    theirs = client.retrieve("documents", [node.node_id], with_vectors=True)[0].vector[SPARSE_VECTOR_NAME]
    ours = next(p for p in client.scroll("documents", with_vectors=True, limit=10)[0]
                if p.payload.get("doc_id") == "docs/a.md").vector[SPARSE_VECTOR_NAME]
    assert (theirs.indices, theirs.values) == (ours.indices, ours.values)


def _docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / "a.md").write_text("Tides rise twice a day.\n\nThe moon pulls the sea.\n")
    return folder


def test_sparse_none_writes_no_sparse_vectors_and_bm25_is_refused_later(tmp_path, tiny_encoder, tiny_model_dir):
    folder, store = _docs(tmp_path), tmp_path / "store"
    ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir),
                 options=IngestOptions(sparse="none"))
    with pytest.raises(IngestError, match="made without sparse vectors.*--sparse bm25"):
        ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir),
                     options=IngestOptions(sparse="bm25"))
    with pytest.raises(IngestError, match="made without sparse vectors"):  # dry runs check too
        ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir),
                     options=IngestOptions(sparse="bm25", dry_run=True))
    again = ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir))  # auto: as made
    assert again.unchanged == 1 and again.chunks_written == 0
    with open_client(str(store)) as client:
        assert not client.get_collection("documents").config.params.sparse_vectors
        point = client.scroll("documents", with_vectors=True)[0][0]
        assert set(point.vector) == {VECTOR_NAME}


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_switching_sparse_off_rewrites_every_document(tmp_path, tiny_encoder, tiny_model_dir):
    folder, store = _docs(tmp_path), tmp_path / "store"
    first = ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir))
    assert first.new == 1
    with open_client(str(store)) as client:
        point = client.scroll("documents", with_vectors=True)[0][0]
        assert set(point.vector) == {VECTOR_NAME, SPARSE_VECTOR_NAME}
        text = json.loads(point.payload["_node_content"])["text"]
        assert point.vector[SPARSE_VECTOR_NAME] == sparse.document_vectors([text])[0]
    assert ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir)).unchanged == 1
    off = ingest_paths([folder], store=StoreTarget(store), encoder=tiny_encoder, model=str(tiny_model_dir),
                       options=IngestOptions(sparse="none"))
    assert off.changed == 1 and off.chunks_written == first.chunks_written
    with open_client(str(store)) as client:
        assert all(set(p.vector) == {VECTOR_NAME} for p in client.scroll("documents", with_vectors=True)[0])


def test_unknown_sparse_setting_is_one_line():
    with pytest.raises(IngestError, match="sparse must be one of bm25, none, got 'splade'"):
        IngestOptions(sparse="splade")


def test_server_gets_the_sparse_config_and_vectors(tmp_path, tiny_encoder, tiny_model_dir, standin):
    folder = _docs(tmp_path)
    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    summary = ingest_paths([folder], store=client, encoder=tiny_encoder, model=str(tiny_model_dir))
    assert summary.new == 1
    params = standin.collections["documents"]["params"]
    assert params["sparse_vectors"] == {SPARSE_VECTOR_NAME: {"modifier": "idf"}}
    stored = list(standin.points("documents").values())
    assert stored and all(set(p["vector"]) == {VECTOR_NAME, SPARSE_VECTOR_NAME} for p in stored)
    again = ingest_paths([folder], store=client, encoder=tiny_encoder, model=str(tiny_model_dir))
    assert again.unchanged == 1 and again.chunks_written == 0
    client.close()


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_llamaindex_hybrid_on_the_embedded_store(tmp_path, tiny_model_dir):
    """The embedded store through its LlamaIndex vector store (ingest/vector_store.py, from the Edge work)."""
    vector_store = pytest.importorskip("sgpt_qdrant.ingest.vector_store", reason="needs the embedded-store work")
    from llama_index.core import VectorStoreIndex

    from sgpt_qdrant import SGPTEmbedding

    folder, store = tmp_path / "docs", tmp_path / "store"
    folder.mkdir()
    (folder / "a.md").write_text("The lighthouse keeper lit the lamp at dusk.\n")
    (folder / "b.md").write_text("Error ERR_CONNECTION_REFUSED means the server is down.\n")
    ingest_paths([folder], store=StoreTarget(store), model=str(tiny_model_dir))
    embed = SGPTEmbedding(model_name=str(tiny_model_dir), device="cpu")
    with vector_store.EdgeVectorStore.open(store, enable_hybrid=True, sparse_doc_fn=sparse.llama_sparse_doc_fn,
                                           sparse_query_fn=sparse.llama_sparse_query_fn) as vs:
        index = VectorStoreIndex.from_vector_store(vs, embed_model=embed)
        for mode in ("sparse", "hybrid"):
            found = index.as_retriever(similarity_top_k=1, sparse_top_k=1, vector_store_query_mode=mode).retrieve(
                "connection refused")
            assert [n.node.ref_doc_id for n in found] == ["docs/b.md"], mode
