"""Uploader over gRPC: a stand-in Points service on 127.0.0.1 answers UNAVAILABLE or sleeps past
the client's deadline a set number of times; the real client (prefer_grpc) talks to it."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent import futures

import grpc
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.grpc import points_pb2, points_service_pb2_grpc

from sgpt_qdrant.ingest.upload import Uploader, UploadError


class _Points(points_service_pb2_grpc.PointsServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stored: dict[str, int] = {}  # uuid -> number of times written
        self.faults: list[str] = []  # "unavailable" | "deadline", consumed in order
        self.always_unavailable = False
        self.sleep_s = 1.5

    def _fault(self):
        with self.lock:
            if self.always_unavailable:
                return "unavailable"
            return self.faults.pop(0) if self.faults else None

    def _ok(self):
        return points_pb2.PointsOperationResponse(
            result=points_pb2.UpdateResult(operation_id=1, status=points_pb2.UpdateStatus.Acknowledged), time=0.0
        )

    def Upsert(self, request, context):
        fault = self._fault()
        if fault == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in: unavailable")
        with self.lock:
            for p in request.points:
                self.stored[p.id.uuid] = self.stored.get(p.id.uuid, 0) + 1
        if fault == "deadline":
            time.sleep(self.sleep_s)  # applied, but the answer comes after the deadline
        return self._ok()

    def Delete(self, request, context):  # the final wait=True no-op
        return self._ok()


@pytest.fixture
def grpc_standin():
    servicer = _Points()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    points_service_pb2_grpc.add_PointsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = QdrantClient(host="127.0.0.1", grpc_port=port, port=1, prefer_grpc=True, timeout=1,
                          check_compatibility=False)
    try:
        yield servicer, client
    finally:
        client.close()
        server.stop(0)


def _points(n: int) -> list[models.PointStruct]:
    return [models.PointStruct(id=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"p{i}")), vector=[1.0, float(i)], payload={})
            for i in range(n)]


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_grpc_unavailable_and_deadline_are_retried_without_loss(grpc_standin):
    servicer, client = grpc_standin
    servicer.faults = ["unavailable", "unavailable", "deadline"]
    points = _points(300)
    with Uploader(client, "c", batch_size=50, max_in_flight=3, backoff_base=0.01, backoff_max=0.05) as up:
        up.upsert(points)
    assert set(servicer.stored) == {p.id for p in points}
    assert up.retried == 3
    assert sum(n > 1 for n in servicer.stored.values()) == 50  # the deadline batch was applied twice


def test_grpc_server_that_stays_unavailable_gives_the_clear_error(grpc_standin):
    servicer, client = grpc_standin
    servicer.always_unavailable = True
    up = Uploader(client, "c", batch_size=10, retries=2, backoff_base=0.01, backoff_max=0.02)
    up.upsert(_points(10))
    port = client._client._grpc_port
    with pytest.raises(UploadError, match=rf"127\.0\.0\.1:{port} \(gRPC\) stayed unreachable.*3 times.*gRPC UNAVAILABLE.*re-running the same command"):
        up.flush()
    up.abort()
