"""EdgeClient (the embedded store on Qdrant Edge) against qdrant-client's in-memory mode as the reference.

The same points go into both; every filter, query, scroll, count, retrieve and delete must give
the same answer (ids in the same order, scores to float32 precision)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest.edge import EdgeClient, EdgeError, StoreInUseError

DIM = 8
N = 120


def _points(rng: np.random.Generator) -> list[models.PointStruct]:
    points = []
    for i in range(N):
        vec = rng.standard_normal(DIM).tolist()
        idx = sorted(rng.choice(50, size=4, replace=False).tolist())
        payload = {
            "doc_id": f"doc{i % 7}", "n": i, "x": float(i) / 3.0, "tags": ["a", "b"] if i % 2 else ["c"],
            "nested": {"k": i % 5}, "items": [{"v": i % 3}, {"v": 10}],
        }
        if i % 11 == 0:
            payload["opt"] = None
        elif i % 13 == 0:
            payload["opt"] = "set"
        pid = i if i % 10 == 0 else str(uuid.uuid5(uuid.NAMESPACE_URL, str(i)))
        points.append(models.PointStruct(id=pid, vector={"text-dense": vec, "sparse": models.SparseVector(
            indices=idx, values=rng.random(4).tolist())}, payload=payload))
    return points


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    rng = np.random.default_rng(0)
    points = _points(rng)
    ref = QdrantClient(":memory:")
    edge = EdgeClient(tmp_path_factory.mktemp("edge") / "store")
    for client in (ref, edge):
        client.create_collection("c", vectors_config={"text-dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
                                 sparse_vectors_config={"sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)})
        client.upsert("c", points=points, wait=True)
    for key in ("doc_id",):
        edge.create_payload_index("c", key, field_schema=models.PayloadSchemaType.KEYWORD)
    yield ref, edge, rng
    edge.close()
    ref.close()


FILTERS = [
    models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="doc3"))]),
    models.Filter(should=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="doc1")),
                          models.FieldCondition(key="n", range=models.Range(lt=10))]),
    models.Filter(must_not=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=["doc1", "doc2"]))]),
    models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchExcept(**{"except": ["doc0"]}))]),
    models.Filter(must=[models.FieldCondition(key="x", range=models.Range(gt=5.5, lte=20.0))]),
    models.Filter(must=[models.FieldCondition(key="tags", match=models.MatchValue(value="a"))]),
    models.Filter(must=[models.HasIdCondition(has_id=[0, 10, str(uuid.uuid5(uuid.NAMESPACE_URL, "5"))])]),
    models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="opt"))]),
    models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="opt"))]),
    models.Filter(must=[models.FieldCondition(key="nested.k", match=models.MatchValue(value=2))]),
    models.Filter(must=[models.NestedCondition(nested=models.Nested(key="items", filter=models.Filter(
        must=[models.FieldCondition(key="v", match=models.MatchValue(value=1))])))]),
    models.Filter(must=[models.Filter(should=[models.FieldCondition(key="n", range=models.Range(gte=100)),
                                              models.FieldCondition(key="n", range=models.Range(lt=3))])],
                  must_not=[models.FieldCondition(key="n", match=models.MatchValue(value=1))]),
    models.Filter(min_should=models.MinShould(conditions=[
        models.FieldCondition(key="doc_id", match=models.MatchValue(value="doc1")),
        models.FieldCondition(key="tags", match=models.MatchValue(value="a")),
        models.FieldCondition(key="n", range=models.Range(lt=60))], min_count=2)),
]


def _ids(points) -> list:
    return [p.id for p in points]


@pytest.mark.parametrize("flt", range(len(FILTERS)))
def test_filters_count_scroll_and_query_match_the_reference(pair, flt):
    ref, edge, rng = pair
    f = FILTERS[flt]
    assert edge.count("c", count_filter=f).count == ref.count("c", count_filter=f).count > 0
    want = ref.scroll("c", scroll_filter=f, limit=1000, with_payload=True)[0]
    got = edge.scroll("c", scroll_filter=f, limit=1000, with_payload=True)[0]
    assert sorted(map(str, _ids(got))) == sorted(map(str, _ids(want)))
    assert {str(p.id): p.payload for p in got} == {str(p.id): p.payload for p in want}
    q = rng.standard_normal(DIM).tolist()
    want = ref.query_points("c", query=q, using="text-dense", query_filter=f, limit=5).points
    got = edge.query_points("c", query=q, using="text-dense", query_filter=f, limit=5).points
    assert _ids(got) == _ids(want)
    assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=1e-5)


def test_dense_sparse_and_rrf_fusion_match_the_reference(pair):
    ref, edge, rng = pair
    q = rng.standard_normal(DIM).tolist()
    sparse = models.SparseVector(indices=[1, 7, 20, 33], values=[0.5, 1.0, 0.2, 0.7])
    for kwargs in (
        {"query": q, "using": "text-dense", "limit": 10, "with_vectors": True},
        {"query": models.NearestQuery(nearest=q), "using": "text-dense", "limit": 3, "offset": 2},
        {"query": sparse, "using": "sparse", "limit": 10},
        {"query": q, "using": "text-dense", "limit": 10, "score_threshold": 0.3},
        {"prefetch": [models.Prefetch(query=q, using="text-dense", limit=20),
                      models.Prefetch(query=sparse, using="sparse", limit=20)],
         "query": models.FusionQuery(fusion=models.Fusion.RRF), "limit": 40},  # all candidates: ties cannot cut
    ):
        want = ref.query_points("c", **kwargs).points
        got = edge.query_points("c", **kwargs).points
        if "prefetch" in kwargs:  # equal fused scores may come in either order
            assert {str(p.id): round(p.score, 6) for p in got} == {str(p.id): round(p.score, 6) for p in want}
            continue
        assert _ids(got) == _ids(want), kwargs
        assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=1e-5)
        if kwargs.get("with_vectors"):
            assert got[0].vector["text-dense"] == pytest.approx(want[0].vector["text-dense"], abs=1e-6)
            assert got[0].vector["sparse"].indices == want[0].vector["sparse"].indices
    batch = [models.QueryRequest(query=q, using="text-dense", limit=4, with_payload=True),
             models.QueryRequest(query=sparse, using="sparse", limit=4)]
    want = ref.query_batch_points("c", requests=batch)
    got = edge.query_batch_points("c", requests=batch)
    assert [_ids(r.points) for r in got] == [_ids(r.points) for r in want]
    assert got[0].points[0].payload == want[0].points[0].payload


def test_retrieve_scroll_pages_and_collection_info(pair):
    ref, edge, _ = pair
    ids = [0, str(uuid.uuid5(uuid.NAMESPACE_URL, "7")), 30]
    got = {str(r.id): r.payload for r in edge.retrieve("c", ids, with_payload=True)}
    want = {str(r.id): r.payload for r in ref.retrieve("c", ids, with_payload=True)}
    assert got == want and len(got) == 3
    seen, offset = [], None
    while True:  # pages of 17 reach every point exactly once, as Qdrant's scroll does
        page, offset = edge.scroll("c", limit=17, offset=offset, with_payload=["doc_id"])
        seen += page
        assert all(set(p.payload) == {"doc_id"} for p in page)
        if offset is None:
            break
    assert len(seen) == N and len({str(p.id) for p in seen}) == N
    assert edge.scroll("c", limit=1000)[0] and _ids(edge.scroll("c", limit=1000)[0]) == _ids(ref.scroll("c", limit=1000)[0])
    info = edge.get_collection("c")
    assert info.points_count == N
    assert info.config.params.vectors["text-dense"].size == DIM
    assert info.config.params.sparse_vectors["sparse"].modifier == models.Modifier.IDF
    assert info.payload_schema["doc_id"].data_type == models.PayloadSchemaType.KEYWORD


def test_plain_value_calls_match_the_reference(pair):
    """What an unchanged re-run reads without qdrant-client objects: every point's id and payload subset
    as the reference's scroll gives them, and the collection's settings as its get_collection says."""
    ref, edge, _ = pair
    fields = ["doc_id", "n", "opt", "absent"]
    want = [(r.id, r.payload) for r in ref.scroll("c", limit=1000, with_payload=fields)[0]]
    assert list(edge.iter_payloads("c", fields, page=17)) == want and len(want) == N
    assert {type(i) for i, _ in want} == {int, str}  # both kinds of id, as a server's client gives them
    settings, info = edge.collection_settings("c"), ref.get_collection("c")
    dense = info.config.params.vectors["text-dense"]
    assert {k: settings["vectors"]["text-dense"][k] for k in ("size", "distance")} == {
        "size": dense.size, "distance": dense.distance.value}
    assert settings["sparse_vectors"] == {"sparse": {"modifier": info.config.params.sparse_vectors["sparse"].modifier.value}}
    assert settings["unnamed"] is False and settings["payload_indexes"] == {"doc_id": "keyword"}


def test_deletes_by_id_and_filter_match_the_reference(tmp_path):
    rng = np.random.default_rng(1)
    points = _points(rng)
    ref = QdrantClient(":memory:")
    with EdgeClient(tmp_path / "s") as edge:
        for client in (ref, edge):
            client.create_collection("c", vectors_config={"text-dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
                                     sparse_vectors_config={"sparse": models.SparseVectorParams()})
            client.upload_points("c", points, batch_size=32)
            client.delete("c", points_selector=[0, str(points[3].id)])
            client.delete("c", points_selector=models.PointIdsList(points=[str(points[5].id)]))
            client.delete("c", points_selector=models.FilterSelector(filter=FILTERS[0]))
            client.delete("c", points_selector=FILTERS[4])
        assert edge.count("c").count == ref.count("c").count < N - 3
        assert sorted(map(str, _ids(edge.scroll("c", limit=1000)[0]))) == sorted(map(str, _ids(ref.scroll("c", limit=1000)[0])))


def test_store_persists_and_collections_are_created_and_deleted_whole(tmp_path):
    store = tmp_path / "s"
    with EdgeClient(store) as edge:
        edge.create_collection("plain", vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT),
                               metadata={"owner": "me"})
        edge.upsert("plain", [models.PointStruct(id=1, vector=[1.0, 2.0, 3.0], payload={"a": 1})])
        with pytest.raises(ValueError, match="already exists"):
            edge.create_collection("plain", vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT))
        edge.update_collection("plain", metadata={"sgpt_bulk_load": {"active": True}})
        edge.update_collection("plain", metadata={"owner": None})
        edge.create_collection("gone", vectors_config={"v": models.VectorParams(size=2, distance=models.Distance.COSINE)})
        assert edge.delete_collection("gone") and not edge.collection_exists("gone")
        assert not edge.delete_collection("gone")
    with EdgeClient(store) as edge:
        info = edge.get_collection("plain")
        assert isinstance(info.config.params.vectors, models.VectorParams)  # unnamed stays unnamed
        assert info.config.params.vectors.distance == models.Distance.DOT
        assert info.config.metadata == {"sgpt_bulk_load": {"active": True}}
        [rec] = edge.retrieve("plain", [1], with_vectors=True)
        assert rec.payload == {"a": 1} and rec.vector == pytest.approx([1.0, 2.0, 3.0])
        assert [c.name for c in edge.get_collections().collections] == ["plain"]
        hit = edge.query_points("plain", query=[1.0, 0.0, 0.0], limit=1).points[0]
        assert hit.id == 1 and hit.score == pytest.approx(1.0)  # dot product, unnormalised
    meta = json.loads((store / "collections" / "plain" / "collection.json").read_text())
    assert meta["vectors"][""]["size"] == 3
    assert not [p for p in (store / "collections").iterdir() if p.name.startswith(".")]  # no staging/trash left


def test_bad_ids_names_and_missing_collection_are_one_line_errors(tmp_path):
    with EdgeClient(tmp_path / "s") as edge:
        with pytest.raises(ValueError, match="not found"):
            edge.get_collection("nope")
        with pytest.raises(ValueError, match="not allowed"):
            edge.collection_exists("../x")
        edge.create_collection("c", vectors_config={"v": models.VectorParams(size=2, distance=models.Distance.COSINE)})
        with pytest.raises(ValueError, match="neither an unsigned integer nor a UUID"):
            edge.upsert("c", [models.PointStruct(id="not-a-uuid", vector={"v": [1.0, 0.0]})])
    with pytest.raises(EdgeError, match="no embedded store"):
        EdgeClient(tmp_path / "missing", create=False)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_second_open_is_refused_in_this_process_and_in_another(tmp_path):
    store = tmp_path / "s"
    with EdgeClient(store) as edge:
        edge.create_collection("c", vectors_config={"v": models.VectorParams(size=2, distance=models.Distance.COSINE)})
        with pytest.raises(StoreInUseError, match="in use by another process.*wait for it or use a Qdrant server"):
            EdgeClient(store)
        code = ("import sys\nfrom sgpt_qdrant.ingest.edge import EdgeClient, StoreInUseError\n"
                f"try:\n    EdgeClient({str(store)!r})\nexcept StoreInUseError as e:\n    print(e); sys.exit(3)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 3 and "in use by another process" in out.stdout
    with EdgeClient(store) as edge:  # released on close
        assert edge.collection_exists("c")


@pytest.mark.slow
def test_kill_9_mid_upsert_keeps_every_acknowledged_batch(tmp_path):
    """SIGKILL while writing: on reopen (WAL replay) every batch the writer reported is present, whole."""
    store = tmp_path / "s"
    ack = tmp_path / "ack"
    code = f"""
import os, sys
from qdrant_client import models
from sgpt_qdrant.ingest.edge import EdgeClient
c = EdgeClient({str(store)!r})
c.create_collection("c", vectors_config={{"v": models.VectorParams(size=16, distance=models.Distance.COSINE)}})
with open({str(ack)!r}, "w") as f:
    for b in range(100000):
        c.upsert("c", [models.PointStruct(id=b * 100 + i, vector={{"v": [1.0 + i] * 16}}, payload={{"b": b}})
                       for i in range(100)])
        f.write(f"{{b}}\\n"); f.flush()
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    import time
    deadline = time.time() + 60
    while time.time() < deadline and (not ack.exists() or len(ack.read_text().split()) < 30):
        time.sleep(0.1)
    os.kill(proc.pid, 9)
    proc.wait()
    acked = len(ack.read_text().split())
    assert acked >= 30
    with EdgeClient(store) as edge:
        count = edge.count("c").count
        assert count >= acked * 100 and count % 100 == 0  # no partial batch


def test_open_client_gives_the_edge_store_and_refuses_legacy_and_held_folders(tmp_path):
    from sgpt_qdrant.ingest.client import StoreError, client_url, is_embedded, open_client

    with open_client(str(tmp_path / "missing"), create=False) as client:
        assert client is None and not (tmp_path / "missing").exists()  # a reader never creates a store
    with open_client(str(tmp_path / "s")) as client:
        assert isinstance(client, EdgeClient) and is_embedded(client)
        assert client_url(client) == f"local:{tmp_path / 's'}"
        with pytest.raises(StoreError, match=r"in use by another process.*wait for it or use a Qdrant server"):
            with open_client(str(tmp_path / "s")):
                pass
    legacy = tmp_path / "legacy"
    (legacy / "collection" / "documents").mkdir(parents=True)
    (legacy / "meta.json").write_text('{"collections": {"documents": {}}, "aliases": {}}')
    (legacy / "collection" / "documents" / "storage.sqlite").write_bytes(b"not read")
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            with open_client(str(legacy), create=create):
                pass
        assert str(info.value) == (f"{legacy}: a store written by qdrant-client local mode (an earlier sgpt-qdrant); "
                                   f"migrate it once with: sgpt-store migrate --qdrant-path {legacy}")
    assert sorted(p.name for p in legacy.iterdir()) == ["collection", "meta.json"]  # untouched, no lock file


def _segments(client: EdgeClient, name: str) -> int:
    return client._shard(name).info().segments_count


@pytest.mark.slow
def test_growing_segment_is_sealed_and_answers_stay_the_references(tmp_path, monkeypatch):
    """Every SEAL_POINTS written points the growing segment is sealed (on disk, no HNSW): the
    answers stay those of qdrant-client's in-memory mode; a collection given --index is not sealed."""
    from sgpt_qdrant.ingest import edge as edge_module

    monkeypatch.setattr(edge_module, "SEAL_POINTS", 25)
    rng = np.random.default_rng(1)
    points = _points(rng)
    ref = QdrantClient(":memory:")
    edge = EdgeClient(tmp_path / "store")
    for client in (ref, edge):
        client.create_collection("c", vectors_config={"text-dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
                                 sparse_vectors_config={"sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)})
    edge.create_payload_index("c", "doc_id", field_schema=models.PayloadSchemaType.KEYWORD)
    for start in range(0, N, 10):
        for client in (ref, edge):
            client.upsert("c", points=points[start:start + 10], wait=True)
    assert _segments(edge, "c") >= N // 25  # sealed ones and the growing one
    edge.close()
    edge = EdgeClient(tmp_path / "store")  # what was sealed reads back after a reopen
    assert edge.count("c", exact=True).count == N
    for flt in (None, models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="doc3"))])):
        for p in points[:5]:
            want = ref.query_points("c", query=p.vector["text-dense"], using="text-dense", limit=7, query_filter=flt).points
            got = edge.query_points("c", query=p.vector["text-dense"], using="text-dense", limit=7, query_filter=flt).points
            assert [q.id for q in got] == [q.id for q in want]
            assert np.allclose([q.score for q in got], [q.score for q in want], atol=1e-5)
    edge.optimize("c", index=True)  # --index: from now on new points wait for the next build
    before = _segments(edge, "c")
    edge.upsert("c", points=[models.PointStruct(id=10_000 + i, vector={"text-dense": rng.standard_normal(DIM).tolist()},
                                                payload={"doc_id": "new"}) for i in range(60)], wait=True)
    assert _segments(edge, "c") <= before + 1
    assert edge.count("c", exact=True).count == N + 60
    edge.close()
    ref.close()


def test_a_collection_made_before_sealing_gets_it_at_its_first_seal(tmp_path, monkeypatch):
    from sgpt_qdrant.ingest import edge as edge_module

    path = tmp_path / "store"
    edge = EdgeClient(path)
    edge.create_collection("c", vectors_config={"text-dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)})
    edge.close()
    meta_file = path / "collections" / "c" / "collection.json"
    meta = json.loads(meta_file.read_text())
    meta.pop("sealing")  # as an earlier version wrote it
    meta_file.write_text(json.dumps(meta))
    monkeypatch.setattr(edge_module, "SEAL_POINTS", 40)  # (Edge seals a segment over 1 KB of vectors: 32 of 8-d)
    edge = EdgeClient(path)
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((100, DIM))
    for start in range(0, 100, 10):
        edge.upsert("c", points=[models.PointStruct(id=i, vector={"text-dense": vectors[i].tolist()}) for i in range(start, start + 10)])
    assert json.loads(meta_file.read_text())["sealing"] is True and _segments(edge, "c") >= 3
    q = rng.standard_normal(DIM)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    want = list(np.argsort(-(unit @ (q / np.linalg.norm(q))))[:5])  # exact cosine top 5 by hand
    assert [p.id for p in edge.query_points("c", query=q.tolist(), using="text-dense", limit=5).points] == want
    edge.close()
