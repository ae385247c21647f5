"""The stand-in Qdrant server (sgpt_qdrant/testing/standin.py) checked against the real client."""

from __future__ import annotations

def _client(server, timeout: float = 5):
    from qdrant_client import QdrantClient

    return QdrantClient(url=server.url, timeout=timeout, check_compatibility=False)


def test_standin_speaks_to_the_real_client(standin):
    from qdrant_client import models

    client = _client(standin)
    assert not client.collection_exists("c")
    client.create_collection("c", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
    assert client.collection_exists("c")
    client.upsert("c", points=[models.PointStruct(id=i, vector=[1.0, 0.0, float(i)], payload={"doc_id": str(i % 2)})
                               for i in range(5)])
    assert client.count("c", exact=True).count == 5
    client.delete("c", points_selector=models.FilterSelector(filter=models.Filter(
        must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="0"))])))
    assert sorted(standin.points("c")) == [1, 3]
    got = client.retrieve("c", ids=[3, 0, 1], with_payload=True, with_vectors=True)
    assert [(r.id, r.payload, r.vector) for r in got] == [(3, {"doc_id": "1"}, [1.0, 0.0, 3.0]),
                                                          (1, {"doc_id": "1"}, [1.0, 0.0, 1.0])]
    assert [(r.id, r.payload) for r in client.retrieve("c", ids=[1], with_payload=False)] == [(1, None)]
    info = client.get_collection("c")
    assert info.config.params.vectors.size == 3
    assert info.points_count == 2
    client.close()
