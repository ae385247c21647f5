"""SGPTEmbedding as LlamaIndex uses it: Settings, VectorStoreIndex over Qdrant, sync/async/batch."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llama_index.core import Settings, StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient
from texts import EXPECTED_WARNINGS, varied_texts

from sgpt_qdrant.ingest.edge import EdgeClient
from sgpt_qdrant import DEFAULT_MODEL, SGPTEmbedding, TruncationWarning

pytestmark = EXPECTED_WARNINGS  # varied_texts() cuts and empties on purpose


@pytest.fixture(scope="module")
def embed_model(tiny_model_dir):
    return SGPTEmbedding(model_name=str(tiny_model_dir), device="cpu", embed_batch_size=16)


def test_defaults_and_fields(embed_model):
    fields = SGPTEmbedding.model_fields
    assert fields["model_name"].default == DEFAULT_MODEL
    assert fields["normalize"].default is False and fields["device"].default is None
    assert fields["embed_batch_size"].default >= 128  # a GPU-sized default, not LlamaIndex's 10
    assert embed_model.dimension == 32 and embed_model.class_name() == "SGPTEmbedding"


def test_to_dict_from_dict_round_trip(embed_model):
    data = embed_model.to_dict()
    assert data["class_name"] == "SGPTEmbedding" and data["model_name"] == embed_model.model_name
    again = SGPTEmbedding.from_dict(data)
    assert again.model_dump() == embed_model.model_dump()
    text = "serialised and back"
    assert again.get_text_embedding(text) == embed_model.get_text_embedding(text)


def test_vectors_are_the_encoders(embed_model, tiny_encoder):
    texts = varied_texts()[:20]
    np.testing.assert_allclose(np.array(embed_model.get_text_embedding_batch(texts)), tiny_encoder.encode(texts), atol=2e-6)


def test_sync_async_and_batch_paths_agree(embed_model):
    texts = varied_texts()[:40]
    batch = np.array(embed_model.get_text_embedding_batch(texts))
    single = np.array([embed_model.get_text_embedding(t) for t in texts])
    query = np.array([embed_model.get_query_embedding(t) for t in texts])  # symmetric model

    async def run_async():
        return (await embed_model.aget_text_embedding_batch(texts),
                [await embed_model.aget_query_embedding(t) for t in texts[:5]],
                await embed_model.aget_text_embedding(texts[0]))

    abatch, aquery, atext = asyncio.run(run_async())
    for other in (single, query, np.array(abatch)):
        np.testing.assert_allclose(other, batch, atol=2e-6)
    np.testing.assert_allclose(np.array(aquery), batch[:5], atol=2e-6)
    np.testing.assert_allclose(atext, batch[0], atol=2e-6)


def test_batches_reach_the_encoder_whole(embed_model, monkeypatch):
    calls = []
    real = embed_model.encoder.encode
    monkeypatch.setattr(embed_model.encoder, "encode", lambda texts, **kw: calls.append(len(texts)) or real(texts))
    with pytest.warns(TruncationWarning):  # varied_texts holds over-long texts on purpose
        embed_model.get_text_embedding_batch(varied_texts()[:40])
    assert calls == [16, 16, 8]  # embed_batch_size=16, never one text at a time
    calls.clear()
    with pytest.warns(TruncationWarning):
        asyncio.run(embed_model.aget_text_embedding_batch(varied_texts()[:40]))
    assert sorted(calls) == [8, 16, 16]


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_normalize_option(tiny_model_dir, embed_model):
    normed = SGPTEmbedding(model_name=str(tiny_model_dir), device="cpu", normalize=True)
    raw = np.array(embed_model.get_text_embedding("a vector"))
    np.testing.assert_allclose(normed.get_text_embedding("a vector"), raw / np.linalg.norm(raw), atol=1e-6)


def test_truncation_is_counted(embed_model):
    before = embed_model.truncated_count  # the module's model: other tests cut texts too
    with pytest.warns(TruncationWarning, match="2 of 3 texts were longer than 75 tokens"):
        embed_model.get_text_embedding_batch(["short", "long " * 200, "also long " * 100])
    assert embed_model.truncated_count - before == 2


def test_vector_store_index_over_qdrant_retrieves_stored_text_first(embed_model, tmp_path):
    previous = Settings._embed_model  # the public getter would resolve the OpenAI default
    Settings.embed_model = embed_model
    try:
        passages = [
            "Qdrant stores vectors with payloads and filters them.",
            "GPT-Neo is a family of causal language models.",
            "The Eiffel Tower is in Paris.",
            "Mean pooling averages token vectors over the real tokens.",
            "Bananas are yellow when they are ripe.",
            "A symmetric model embeds queries and documents alike.",
        ]
        client = EdgeClient(tmp_path / "qdrant")
        try:
            store = QdrantVectorStore(client=client, collection_name="docs")
            index = VectorStoreIndex(
                [TextNode(text=p) for p in passages],
                storage_context=StorageContext.from_defaults(vector_store=store),
            )
            retriever = index.as_retriever(similarity_top_k=3)
            for passage in passages:
                hits = retriever.retrieve(passage)
                assert hits[0].node.get_content() == passage
                assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        finally:
            client.close()
    finally:
        Settings._embed_model = previous
