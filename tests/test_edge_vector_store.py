"""EdgeVectorStore (LlamaIndex on the embedded Qdrant Edge store) against LlamaIndex's own
QdrantVectorStore on qdrant-client's in-memory mode, over the same points: the same nodes in the
same order with the same scores, for plain and filtered queries, and the same add / delete /
get_nodes / clear behaviour."""

from __future__ import annotations

import asyncio
from contextlib import closing

import pytest

pytest.importorskip("llama_index.vector_stores.qdrant")

from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from sgpt_qdrant.ingest.edge import EdgeClient  # noqa: E402
from sgpt_qdrant.ingest.schema import DEFAULT_COLLECTION, VECTOR_NAME  # noqa: E402
from sgpt_qdrant.ingest.vector_store import EdgeVectorStore  # noqa: E402

TEXTS = [
    "Bees find flowers by scent and colour.", "Tides follow the moon twice a day.",
    "Sourdough rises without baker's yeast.", "A lighthouse warns ships at night.",
    "Honey is made from nectar.", "The moon has no light of its own.", "Bread needs flour, water and salt.",
    "Ships carry containers across oceans.", "Flowers open in the morning sun.", "Yeast eats sugar and makes gas.",
    "Night falls earlier in winter.", "Oceans cover most of the Earth.",
]
FILTERS = [
    None,
    MetadataFilters(filters=[MetadataFilter(key="topic", value="food")]),
    MetadataFilters(filters=[MetadataFilter(key="topic", value="sea", operator=FilterOperator.NE)]),
    MetadataFilters(filters=[MetadataFilter(key="year", value=2005, operator=FilterOperator.GT),
                             MetadataFilter(key="year", value=2010, operator=FilterOperator.LT)]),
    MetadataFilters(filters=[MetadataFilter(key="topic", value=["food", "sky"], operator=FilterOperator.IN)]),
    MetadataFilters(filters=[MetadataFilter(key="topic", value="food"),
                             MetadataFilter(key="year", value=2011, operator=FilterOperator.GT)],
                    condition=FilterCondition.OR),
    MetadataFilters(filters=[MetadataFilter(key="topic", value="nature"),
                             MetadataFilters(filters=[MetadataFilter(key="year", value=2003, operator=FilterOperator.LT),
                                                      MetadataFilter(key="year", value=2009, operator=FilterOperator.GT)],
                                             condition=FilterCondition.OR)],
                    condition=FilterCondition.AND),
]
# qdrant-client's in-memory reference says that payload indexes do nothing there
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

TOPICS = ["nature", "sea", "food", "sea", "food", "sky", "food", "sea", "nature", "food", "sky", "sea"]


@pytest.fixture(scope="module")
def embed(tiny_model_dir):
    from sgpt_qdrant import SGPTEmbedding

    return SGPTEmbedding(model_name=str(tiny_model_dir), device="cpu")


_VECTORS: dict = {}


def _nodes(embed) -> list[TextNode]:
    vectors = _VECTORS.get(id(embed)) or _VECTORS.setdefault(id(embed), embed.get_text_embedding_batch(TEXTS))
    return [TextNode(id_=f"00000000-0000-0000-0000-{i:012d}", text=t, embedding=v,
                     metadata={"topic": TOPICS[i], "year": 2000 + i},
                     relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i % 4}")})
            for i, (t, v) in enumerate(zip(TEXTS, vectors))]


def _stores(tmp_path, embed):
    ref = QdrantVectorStore(collection_name="c", client=QdrantClient(":memory:"))
    edge = EdgeVectorStore.open(tmp_path / "store", collection_name="c")
    for store in (ref, edge):
        store.add(_nodes(embed))
    return ref, edge


def _hits(store, embed, query, flt, k=4):
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    return [(h.node.node_id, round(h.score, 5), h.node.get_content(), h.node.metadata, h.node.ref_doc_id)
            for h in index.as_retriever(similarity_top_k=k, filters=flt).retrieve(query)]


@pytest.mark.parametrize("flt", range(len(FILTERS)))
def test_retrieval_matches_qdrant_vector_store(tmp_path, embed, flt):
    ref, edge = _stores(tmp_path, embed)
    with edge:
        for query in ("where does honey come from", "ships at sea"):
            want = _hits(ref, embed, query, FILTERS[flt])
            assert want, "the reference finds something"
            assert _hits(edge, embed, query, FILTERS[flt]) == want


def test_add_delete_get_nodes_clear_and_async_match_the_reference(tmp_path, embed):
    ref, edge = _stores(tmp_path, embed)
    with edge:
        for store in (ref, edge):
            store.delete("doc1")  # by ref_doc_id
        ids = [n.node_id for n in _nodes(embed)]
        got = edge.get_nodes(node_ids=ids[:6])
        want = ref.get_nodes(node_ids=ids[:6])
        assert sorted(n.node_id for n in got) == sorted(n.node_id for n in want) and len(got) == 4  # doc1 held 1 and 5
        assert {n.node_id: (n.text, n.metadata, n.ref_doc_id) for n in got} == \
            {n.node_id: (n.text, n.metadata, n.ref_doc_id) for n in want}
        for a, b in zip(sorted(got, key=lambda n: n.node_id), sorted(want, key=lambda n: n.node_id)):
            assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        flt = MetadataFilters(filters=[MetadataFilter(key="topic", value="food")])
        assert sorted(n.node_id for n in edge.get_nodes(filters=flt)) == sorted(n.node_id for n in ref.get_nodes(filters=flt))
        q = VectorStoreQuery(query_embedding=embed.get_query_embedding("bread"), similarity_top_k=3)
        want = ref.query(q)
        got = asyncio.run(edge.aquery(q))
        assert got.ids == want.ids and got.similarities == pytest.approx(want.similarities, abs=1e-5)

        async def many():
            return await asyncio.gather(*[edge.aquery(q) for _ in range(8)])  # threads at once

        assert all(r.ids == want.ids for r in asyncio.run(many()))
        asyncio.run(edge.adelete("doc2"))
        ref.delete("doc2")
        assert edge.query(q).ids == ref.query(q).ids
        asyncio.run(edge.async_add(_nodes(embed)[:2]))
        ref.add(_nodes(embed)[:2])
        assert edge.client.count("c").count == ref.client.count("c").count == 12 - 6 + 1
        edge.clear()
        assert not edge.client.collection_exists("c")


@pytest.mark.slow  # an ingest run (shared fixture)
def test_reads_what_sgpt_ingest_stored_as_qdrant_vector_store_does(examples_store, embed):
    """Points written by sgpt-ingest (named vector text-dense), copied into the in-memory reference."""
    ref_client = QdrantClient(":memory:")
    with closing(EdgeClient(examples_store)) as client:
        points, _ = client.scroll(DEFAULT_COLLECTION, limit=10_000, with_payload=True, with_vectors=True)
        params = client.get_collection(DEFAULT_COLLECTION).config.params
    ref_client.create_collection(DEFAULT_COLLECTION, vectors_config={
        VECTOR_NAME: models.VectorParams(size=params.vectors[VECTOR_NAME].size, distance=models.Distance.COSINE)},
        sparse_vectors_config=params.sparse_vectors)  # sgpt-ingest writes BM25 vectors too (--sparse bm25)
    ref_client.upsert(DEFAULT_COLLECTION, [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload)
                                           for p in points])
    ref = QdrantVectorStore(collection_name=DEFAULT_COLLECTION, client=ref_client)
    with EdgeVectorStore.open(examples_store) as edge:
        for query in ("how do bees find flowers", "why are there two tides a day"):
            flt = MetadataFilters(filters=[MetadataFilter(key="chunk_index", value=0, operator=FilterOperator.GT)])
            for f in (None, flt):
                want = _hits(ref, embed, query, f, k=5)
                assert len(want) == 5 and _hits(edge, embed, query, f, k=5) == want
