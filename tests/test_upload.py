"""Uploader: retries, pipelining and ordering against the stand-in server; local mode."""

from __future__ import annotations

import socket
import uuid

import grpc
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from sgpt_qdrant.ingest.upload import FLUSH_MARKER_ID, Uploader, UploadError, is_retryable

DIM = 4
NS = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _pid(doc: str, i: int) -> str:
    return str(uuid.uuid5(NS, f"{doc}#{i}"))


def _points(doc: str, n: int, version: int = 0) -> list[models.PointStruct]:
    return [
        models.PointStruct(
            id=_pid(doc, i), vector=[float(i), float(version), 1.0, 0.5],
            payload={"doc_id": doc, "chunk": i, "version": version},
        )
        for i in range(n)
    ]


def _setup(server, timeout: float = 5.0) -> QdrantClient:
    client = QdrantClient(url=server.url, timeout=timeout, check_compatibility=False)
    client.create_collection("c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    return client


def _fast(client, **kw) -> Uploader:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return Uploader(client, "c", **kw)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_recovers_from_503_and_timeouts_without_loss_or_duplicates(standin):
    client = _setup(standin, timeout=1)  # qdrant-client rounds timeouts up to whole seconds
    standin.sleep_s = 1.3  # past the client's timeout: applied on the server, but the client gives up
    standin.fail("upsert", 3, "503")
    standin.fail("upsert", 2, "timeout")
    points = [p for d in range(12) for p in _points(f"doc{d}", 50)]
    with _fast(client, batch_size=50, max_in_flight=4) as up:
        up.upsert(points)
    stored = standin.points("c")
    assert set(stored) == {p.id for p in points}  # nothing lost
    assert len(stored) == len(points)  # nothing else
    for p in points:
        assert stored[p.id]["payload"] == p.payload and stored[p.id]["vector"] == p.vector
    assert up.retried == 5
    # the timed-out batches were applied, then sent again: idempotent by id, so still one point each
    assert sum(1 for n in standin.applied.values() if n > 1) == 2 * 50
    writes = [e for e in standin.log if e["path"].startswith("/collections/c/points")]
    assert all(e["wait"] == "false" for e in writes if e["method"] == "PUT")
    final = writes[-1]
    assert final["path"].endswith("/points/delete") and final["wait"] == "true"
    assert final["body"]["filter"]["must"][0]["has_id"] == [FLUSH_MARKER_ID]
    assert final["start"] >= max(e["end"] for e in writes[:-1])  # after every other write
    client.close()


def test_an_uploader_given_nothing_sends_nothing_and_one_given_writes_ends_with_the_wait(standin):
    client = _setup(standin)
    before = len(standin.log)
    with _fast(client) as up:  # an unchanged re-run: nothing to write, so no request, not even the final one
        pass
    assert up.requests == 0 and len(standin.log) == before
    with _fast(client) as up:
        up.delete([_pid("a", 0)], barrier=False)
    writes = [e for e in standin.log[before:] if e["path"].startswith("/collections/c/points")]
    assert [e["path"].rsplit("/", 1)[-1] for e in writes] == ["delete", "delete"]  # the delete, then the wait
    assert writes[-1]["wait"] == "true" and writes[-1]["body"]["filter"]["must"][0]["has_id"] == [FLUSH_MARKER_ID]
    client.close()


def test_gives_up_with_a_clear_error_when_the_server_stays_down(standin):
    client = _setup(standin)
    standin.always_fail = "upsert"
    with pytest.raises(UploadError) as err:
        with _fast(client, batch_size=10, retries=3) as up:
            up.upsert(_points("a", 30))
            up.flush()
    text = str(err.value)
    assert standin.url in text and "stayed unreachable" in text and "4 times" in text
    assert "re-running the same command completes the job" in text
    assert "HTTP 503" in text
    assert standin.points("c") == {}
    # a re-run once the server is back writes everything, exactly once per id
    standin.always_fail = None
    with _fast(client, batch_size=10) as up:
        up.upsert(_points("a", 30))
    assert set(standin.points("c")) == {_pid("a", i) for i in range(30)}
    client.close()


def test_unreachable_address_gives_the_clear_error():
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = QdrantClient(url=f"http://127.0.0.1:{port}", timeout=1, check_compatibility=False)
    up = _fast(client, batch_size=5, retries=2)
    up.upsert(_points("a", 3))
    with pytest.raises(UploadError, match=rf"127\.0\.0\.1:{port} stayed unreachable.*re-running the same command"):
        up.close()
    client.close()


def test_4xx_is_not_retried(standin):
    client = QdrantClient(url=standin.url, timeout=5, check_compatibility=False)
    up = Uploader(client, "missing", batch_size=5, backoff_base=0.01)
    up.upsert(_points("a", 5))
    with pytest.raises(UploadError, match="rejected the upsert.*HTTP 404"):
        up.flush()
    assert up.requests == 1 and up.retried == 0
    up.abort()
    client.close()


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_requests_in_flight_are_bounded_and_pipelined(standin):
    client = _setup(standin)
    standin.write_delay_s = 0.05
    with _fast(client, batch_size=10, max_in_flight=3) as up:
        up.upsert(_points("a", 200))
    assert standin.max_active == 3
    assert len(standin.points("c")) == 200
    client.close()


def test_delete_waits_for_earlier_upserts_and_later_upserts_wait_for_it(standin):
    client = _setup(standin)
    standin.write_delay_s = 0.03
    doc_filter = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="a"))])
    with _fast(client, batch_size=2, max_in_flight=4) as up:
        up.upsert(_points("a", 10, version=1))  # the old file: 10 chunks
        up.upsert(_points("b", 6, version=1))
        up.delete(doc_filter)  # the file changed: its old chunks go
        up.upsert(_points("a", 4, version=2))  # and it now has 4
    stored = standin.points("c")
    assert {k for k, v in stored.items() if v["payload"]["doc_id"] == "a"} == {_pid("a", i) for i in range(4)}
    assert all(v["payload"]["version"] == 2 for v in stored.values() if v["payload"]["doc_id"] == "a")
    assert len(stored) == 4 + 6
    log = [e for e in standin.log if e["path"].startswith("/collections/c/points")]
    delete = next(i for i, e in enumerate(log) if e["path"].endswith("/delete"))
    assert log[delete]["start"] >= max(e["end"] for e in log[:delete])
    assert all(e["start"] >= log[delete]["end"] for e in log[delete + 1:])
    client.close()


def test_an_id_queued_twice_keeps_the_later_value_in_local_mode():
    client = QdrantClient(":memory:")
    client.create_collection("c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    with Uploader(client, "c", batch_size=3) as up:
        assert up.wait is True and up.max_in_flight == 1
        up.upsert(_points("a", 5, version=1))
        up.upsert(_points("a", 2, version=2))
        up.delete([_pid("a", 4)])
    got = {p.id: p.payload["version"] for p in client.scroll("c", limit=100)[0]}
    assert got == {_pid("a", 0): 2, _pid("a", 1): 2, _pid("a", 2): 1, _pid("a", 3): 1}
    client.close()


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    "exc, expected",
    [
        (UnexpectedResponse(503, "Service Unavailable", b"", None), True),
        (UnexpectedResponse(502, "Bad Gateway", b"", None), True),
        (UnexpectedResponse(429, "Too Many Requests", b"", None), True),
        (UnexpectedResponse(400, "Bad Request", b"", None), False),
        (UnexpectedResponse(404, "Not Found", b"", None), False),
        (_FakeRpcError(grpc.StatusCode.UNAVAILABLE), True),
        (_FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED), True),
        (_FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT), False),
        (_FakeRpcError(grpc.StatusCode.NOT_FOUND), False),
        (TimeoutError(), True),
        (ConnectionRefusedError(), True),
        (ValueError("bad vector"), False),
    ],
)
def test_retry_classification(exc, expected):
    assert is_retryable(exc) is expected


def test_backoff_grows_exponentially_up_to_the_cap():
    client = QdrantClient(":memory:")
    up = Uploader(client, "c", backoff_base=0.5, backoff_max=4.0, jitter=0.0)
    assert [up._backoff(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    up.jitter = 1.0
    delays = [up._backoff(3) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays) and max(delays) - min(delays) > 1.0
    up.abort()
    client.close()


def _stale(doc: str, version: int) -> models.Filter:
    """The ingest pattern: this document's points of any other version."""
    return models.Filter(
        must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc))],
        must_not=[models.FieldCondition(key="version", match=models.MatchValue(value=version))],
    )


def test_non_barrier_deletes_are_coalesced_and_pipelined(standin):
    client = _setup(standin)
    docs = [f"doc{d}" for d in range(20)]
    with _fast(client, batch_size=64) as up:  # the old state: 15 chunks per document
        up.upsert([p for d in docs for p in _points(d, 15, version=1)])
    standin.write_delay_s = 0.02
    start = len(standin.log)
    with _fast(client, batch_size=64, max_in_flight=4, delete_batch=8, barrier_deletes=False) as up:
        for d in docs:  # each document shrank to 10 chunks
            up.upsert(_points(d, 10, version=2))
            up.delete(_stale(d, 2))  # as ingest.sync calls it
    stored = standin.points("c")
    assert set(stored) == {_pid(d, i) for d in docs for i in range(10)}
    assert all(v["payload"]["version"] == 2 for v in stored.values())
    deletes = [e for e in standin.log[start:] if e["path"].endswith("/points/delete") and e["wait"] == "false"]
    assert len(deletes) == 3  # 20 documents, 8 per request
    assert len(deletes[0]["body"]["filter"]["should"]) == 8
    assert standin.max_active > 1
    client.close()


def test_non_barrier_deletes_in_local_mode():
    client = QdrantClient(":memory:")
    client.create_collection("c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    with Uploader(client, "c", batch_size=4, delete_batch=3) as up:
        for d in ("a", "b", "c", "d"):
            up.upsert(_points(d, 5, version=1))
        for d in ("a", "b", "c", "d"):
            up.upsert(_points(d, 2, version=2))
            up.delete(_stale(d, 2), barrier=False)
        up.delete([_pid("d", 0)], barrier=False)
    got = sorted((p.payload["doc_id"], p.payload["chunk"], p.payload["version"]) for p in client.scroll("c", limit=100)[0])
    assert got == [(d, i, 2) for d in "abcd" for i in range(2) if (d, i) != ("d", 0)]
    client.close()


def test_abort_stops_retrying_at_once(standin):
    import threading
    import time

    client = _setup(standin)
    standin.always_fail = "upsert"
    up = Uploader(client, "c", batch_size=10, max_in_flight=2, retries=50, backoff_base=5.0, backoff_max=5.0, jitter=0.0)
    up.upsert(_points("a", 20))  # two batches now retrying, 5 s apart
    time.sleep(0.3)
    t0 = time.monotonic()
    up.abort()  # e.g. Ctrl-C: must not sit out 50 retries
    assert time.monotonic() - t0 < 2.0
    assert not any(t.name.startswith("qdrant-upload") for t in threading.enumerate())
    client.close()
