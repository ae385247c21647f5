"""Collection settings, existing-collection checks and bulk-load mode (embedded store + stand-in server)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest.edge import EdgeClient
from sgpt_qdrant.ingest.collection_config import (
    BULK_LOAD_KEY,
    CollectionMismatchError,
    CollectionSettings,
    bulk_load,
    bulk_load_pending,
    check_collection,
    collection_layout,
    end_bulk_load,
    ensure_collection,
)

ROOT = Path(__file__).resolve().parents[1]


def test_create_kwargs_match_the_qdrant_models():
    s = CollectionSettings(
        shards=6, replication_factor=2, write_consistency_factor=2, on_disk=True, quantization=True,
        hnsw_m=32, hnsw_ef_construct=256, on_disk_payload=True, indexing_threshold=50000,
    )
    assert s.create_kwargs(768) == {
        "vectors_config": models.VectorParams(size=768, distance=models.Distance.COSINE, on_disk=True),
        "shard_number": 6,
        "replication_factor": 2,
        "write_consistency_factor": 2,
        "on_disk_payload": True,
        "hnsw_config": models.HnswConfigDiff(m=32, ef_construct=256),
        "quantization_config": models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
        ),
        "optimizers_config": models.OptimizersConfigDiff(indexing_threshold=50000),
    }
    assert CollectionSettings().create_kwargs(8, vector_name="text-dense") == {
        "vectors_config": {"text-dense": models.VectorParams(size=8, distance=models.Distance.COSINE)}
    }
    with pytest.raises(ValueError, match="--shards must be at least 1"):
        CollectionSettings(shards=0)


def test_creates_cosine_collection_then_reuses_it(tmp_path):
    with closing(EdgeClient(tmp_path / "store")) as client:
        state = ensure_collection(client, "docs", 16)
        assert state.created and state.local and not state.differences
        vectors = client.get_collection("docs").config.params.vectors
        assert (vectors.size, vectors.distance) == (16, models.Distance.COSINE)
        schema = client.get_collection("docs").payload_schema
        assert {k: v.data_type for k, v in schema.items()} == {
            k: models.PayloadSchemaType.KEYWORD for k in ("doc_id", "ref_doc_id", "file_name", "file_path", "ingest_state")}
        again = ensure_collection(client, "docs", 16)
        assert not again.created and not again.differences


@pytest.mark.parametrize("size, distance", [(32, models.Distance.COSINE), (16, models.Distance.DOT)])
def test_wrong_dimension_or_distance_is_refused(tmp_path, size, distance):
    with closing(EdgeClient(tmp_path / "store")) as client:
        client.create_collection("docs", vectors_config=models.VectorParams(size=size, distance=distance))
        with pytest.raises(CollectionMismatchError, match=rf"'docs'.*stores {size}-d {distance.value}.*16-d Cosine"):
            ensure_collection(client, "docs", 16)


def test_named_vector_must_exist(tmp_path):
    with closing(EdgeClient(tmp_path / "store")) as client:
        client.create_collection("docs", vectors_config={"other": models.VectorParams(size=16, distance="Cosine")})
        with pytest.raises(CollectionMismatchError, match="no vector 'text-dense'.*other"):
            ensure_collection(client, "docs", 16, vector_name="text-dense")
        assert not ensure_collection(client, "docs", 16, vector_name="other").created


@pytest.mark.parametrize("vectors, sparse", [
    ({"text-dense": models.VectorParams(size=16, distance=models.Distance.COSINE)},
     {"text-sparse-new": models.SparseVectorParams(modifier=models.Modifier.IDF)}),
    (models.VectorParams(size=8, distance=models.Distance.DOT), None),
    ({"a": models.VectorParams(size=4, distance=models.Distance.EUCLID),
      "b": models.VectorParams(size=5, distance=models.Distance.COSINE)}, {"s": models.SparseVectorParams()}),
])
def test_embedded_layout_read_from_its_settings_file_is_the_one_qdrant_client_reports(tmp_path, vectors, sparse):
    """The embedded store's layout comes from collection.json, not qdrant-client's objects: it must
    equal the layout qdrant-client's own CollectionInfo gives for the same collection (in-memory mode)."""
    ref = QdrantClient(":memory:")
    with closing(EdgeClient(tmp_path / "store")) as edge:
        for client in (ref, edge):
            client.create_collection("docs", vectors_config=vectors, sparse_vectors_config=sparse)
        got, want = collection_layout(edge, "docs"), collection_layout(ref, "docs")
        assert want.info is not None and got.info is None
        assert (got.vectors, got.unnamed, got.sparse_vectors) == (want.vectors, want.unnamed, want.sparse_vectors)
        named = None if isinstance(vectors, models.VectorParams) else next(iter(vectors))
        params = vectors if named is None else vectors[named]
        dim, distance = params.size, params.distance.value
        for client in (ref, edge):
            if distance == "Cosine":
                assert check_collection(client, "docs", dim, vector_name=named) == collection_layout(client, "docs")
            else:
                with pytest.raises(CollectionMismatchError, match=rf"stores {dim}-d {distance} vectors"):
                    check_collection(client, "docs", dim, vector_name=named)
            assert check_collection(client, "other", dim) is None
    ref.close()


def test_server_creation_sends_the_settings_and_a_doc_id_index(standin):
    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    s = CollectionSettings(shards=3, replication_factor=2, on_disk=True, hnsw_m=32, quantization=True)
    state = ensure_collection(client, "docs", 768, s)
    assert state.created and not state.local
    info = client.get_collection("docs")
    assert info.config.params.shard_number == 3 and info.config.params.replication_factor == 2
    assert info.config.params.vectors.on_disk is True and info.config.hnsw_config.m == 32
    assert info.config.quantization_config.scalar.type == models.ScalarType.INT8
    assert {k: v.data_type for k, v in info.payload_schema.items()} == {
        k: models.PayloadSchemaType.KEYWORD for k in ("doc_id", "ref_doc_id", "file_name", "file_path", "ingest_state")}
    client.close()


def test_existing_server_collection_is_used_as_it_is_with_a_warning_per_difference(standin, caplog):
    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    client.create_collection(
        "docs", vectors_config=models.VectorParams(size=768, distance="Cosine"), shard_number=2,
        hnsw_config=models.HnswConfigDiff(m=16),
    )
    patches = sum(1 for e in standin.log if e["method"] == "PATCH")
    wanted = CollectionSettings(shards=4, replication_factor=1, hnsw_m=48, on_disk=True)
    with caplog.at_level(logging.WARNING, logger="sgpt_qdrant.ingest.collection_config"):
        state = ensure_collection(client, "docs", 768, wanted)
    assert not state.created
    assert sorted(d.split(":")[0] for d in state.differences) == ["HNSW m", "shards", "vectors on disk"]
    assert "shards: asked 4, the collection has 2" in state.differences
    assert sum("used as it is" in r.getMessage() for r in caplog.records) == 3
    info = client.get_collection("docs")  # nothing changed
    assert info.config.params.shard_number == 2 and info.config.hnsw_config.m == 16
    assert sum(1 for e in standin.log if e["method"] == "PATCH") == patches
    client.close()


def test_bulk_load_defers_indexing_and_restores_it(standin):
    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    state = ensure_collection(client, "docs", 8, CollectionSettings(indexing_threshold=15000), bulk_load=True)
    assert state.bulk_load
    info = client.get_collection("docs")
    assert info.config.optimizer_config.indexing_threshold == 0
    assert info.config.metadata[BULK_LOAD_KEY]["indexing_threshold"] == 15000
    assert end_bulk_load(client, "docs")
    info = client.get_collection("docs")
    assert info.config.optimizer_config.indexing_threshold == 15000
    assert not (info.config.metadata or {}).get(BULK_LOAD_KEY)
    assert not end_bulk_load(client, "docs")  # nothing to end twice
    client.close()


def test_killed_bulk_load_is_restored_by_the_next_run_even_a_bulk_load(standin, caplog):
    first = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    ensure_collection(first, "docs", 8, CollectionSettings(indexing_threshold=12000), bulk_load=True)
    first.close()  # killed: no end_bulk_load
    # the re-run is a bulk load too: it must keep the recorded 12000, not record the deferred 0
    second = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    state = ensure_collection(second, "docs", 8, bulk_load=True)
    assert state.bulk_load and not state.restored_bulk_load
    assert second.get_collection("docs").config.optimizer_config.indexing_threshold == 0
    second.close()  # killed again
    third = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    with caplog.at_level(logging.WARNING, logger="sgpt_qdrant.ingest.collection_config"):
        state = ensure_collection(third, "docs", 8)  # a normal run
    assert state.restored_bulk_load
    assert any("interrupted bulk load" in r.getMessage() for r in caplog.records)
    info = third.get_collection("docs")
    assert info.config.optimizer_config.indexing_threshold == 12000
    assert bulk_load_pending(third, "docs") is None
    third.close()


def test_bulk_load_context_restores_after_an_exception(standin):
    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    ensure_collection(client, "docs", 8)
    with pytest.raises(KeyboardInterrupt):
        with bulk_load(client, "docs"):
            assert client.get_collection("docs").config.optimizer_config.indexing_threshold == 0
            raise KeyboardInterrupt
    assert client.get_collection("docs").config.optimizer_config.indexing_threshold == 10000  # stand-in default
    client.close()


@pytest.mark.slow
def test_embedded_store_bulk_load_survives_sigkill_and_is_restored(tmp_path, caplog):
    store = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import os, signal
        from sgpt_qdrant.ingest.collection_config import ensure_collection
        from sgpt_qdrant.ingest.edge import EdgeClient
        client = EdgeClient({str(store)!r})
        ensure_collection(client, "docs", 8, bulk_load=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with closing(EdgeClient(store)) as client:
        marker = client.get_collection("docs").config.metadata[BULK_LOAD_KEY]
        assert marker["active"] is True
        with caplog.at_level(logging.WARNING, logger="sgpt_qdrant.ingest.collection_config"):
            state = ensure_collection(client, "docs", 8)
        assert state.restored_bulk_load
        assert any("interrupted bulk load" in r.getMessage() for r in caplog.records)
        assert not (client.get_collection("docs").config.metadata or {}).get(BULK_LOAD_KEY)
    with closing(EdgeClient(store)) as client:  # and that is on disk
        assert not (client.get_collection("docs").config.metadata or {}).get(BULK_LOAD_KEY)
        assert not ensure_collection(client, "docs", 8).restored_bulk_load


def test_workers_creating_the_collection_at_once_all_succeed(standin):
    import threading

    results, errors = [], []

    def worker():
        client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
        try:
            results.append(ensure_collection(client, "docs", 8, CollectionSettings(shards=2)).created)
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)
        finally:
            client.close()

    real_exists = type(standin).dispatch

    def slow_exists(self, method, path, body, entry):  # everyone sees "missing" before anyone creates
        if path.endswith("/exists"):
            import time
            time.sleep(0.2)
        return real_exists(self, method, path, body, entry)

    standin.dispatch = slow_exists.__get__(standin)
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sorted(results) == [False, False, True]


@pytest.mark.parametrize("mode", ["ignored", "rejected"])
def test_bulk_load_refuses_a_server_without_collection_metadata(standin, mode):
    from sgpt_qdrant.ingest.collection_config import BulkLoadError

    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    ensure_collection(client, "docs", 8)
    real_update = type(standin).update

    def old_server_update(self, name, body):
        if body.get("metadata") is not None and mode == "rejected":
            raise KeyError("metadata")  # answered below as a 400
        body = {k: v for k, v in body.items() if k != "metadata"}  # an old server drops the field
        return real_update(self, name, body)

    real_dispatch = type(standin).dispatch

    def dispatch(self, method, path, body, entry):
        try:
            return real_dispatch(self, method, path, body, entry)
        except KeyError:
            return 400, {"status": {"error": "Json deserialize error: unknown field `metadata`"}}

    standin.update = old_server_update.__get__(standin)
    standin.dispatch = dispatch.__get__(standin)
    with pytest.raises(BulkLoadError, match="collection metadata.*run without --bulk-load"):
        ensure_collection(client, "docs", 8, bulk_load=True)
    info = client.get_collection("docs")
    assert info.config.optimizer_config.indexing_threshold == 10000  # indexing never deferred
    client.close()
