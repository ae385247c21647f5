"""Shared fixtures: a tiny random SGPT checkpoint in the exact Hub layout, built once a session, and a
stand-in Qdrant REST server on 127.0.0.1 for the retry, pipelining, bulk-load and error tests.

The stand-in speaks the part of Qdrant's REST API that the real `QdrantClient(url=...)` uses here
(server version, collection exists/create/info/update, payload index, points upsert/delete/
count/scroll/retrieve), keeps points in a dict, and can be told to answer 503 or to sleep past the client's
timeout a set number of times, or to demand an API key (answering 401 with the request headers
echoed, as a careless proxy does). Requests are logged with start/end times so tests can check
ordering. tests/test_upload_standin.py checks the stand-in itself against the real client.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

# Nothing in the tests may reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Random GPT-Neo (2 layers, hidden 32) + 5 GELU Dense + mean pooling, real GPT-2 BPE."""
    from sgpt_qdrant.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("sgpt-tiny") / "model")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from sgpt_qdrant import Encoder

    return Encoder(str(tiny_model_dir), device="cpu")


# -- the stand-in Qdrant server --------------------------------------------------------------

VERSION = "1.20.0"


def _ok(result) -> dict:
    return {"result": result, "status": "ok", "time": 0.0}


def _matches(point: dict, pid, flt: dict) -> bool:
    def cond(c: dict) -> bool:
        if "has_id" in c:
            return pid in c["has_id"]
        if "key" in c and "match" in c:
            value = (point.get("payload") or {}).get(c["key"])
            match = c["match"]
            if "value" in match:
                return value == match["value"]
            if "any" in match:
                return value in match["any"]
        if "must" in c or "should" in c or "must_not" in c:
            return _matches(point, pid, c)
        raise AssertionError(f"stand-in: unsupported condition {c}")

    def as_list(x):
        return x if isinstance(x, list) else ([] if x is None else [x])

    must = as_list(flt.get("must"))
    should = as_list(flt.get("should"))
    must_not = as_list(flt.get("must_not"))
    return (
        all(cond(c) for c in must)
        and (not should or any(cond(c) for c in should))
        and not any(cond(c) for c in must_not)
    )


class StandIn:
    """State and fault script of the stand-in server."""

    def __init__(self) -> None:
        self.collections: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.faults: deque[tuple[str, str]] = deque()  # (op, mode) consumed in order
        self.sleep_s = 1.0
        self.log: list[dict] = []
        self.applied: dict = {}  # point id -> number of times an upsert wrote it
        self.write_delay_s = 0.0
        self.always_fail: str | None = None  # op that always answers 503
        self.active = 0
        self.max_active = 0  # most write requests being handled at once
        self.api_key: str | None = None  # when set: other requests get a 401 that echoes their headers
        self.drop_writes = False  # when set: upserts are acknowledged and dropped (a broken server or proxy)
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, op: str, times: int, mode: str) -> None:
        """The next `times` requests of `op` ("upsert", "delete", "any") answer `mode` ("503"/"timeout")."""
        for _ in range(times):
            self.faults.append((op, mode))

    def points(self, name: str) -> dict:
        return self.collections[name]["points"]

    # -- collections ---------------------------------------------------------------------

    def info(self, name: str) -> dict:
        c = self.collections[name]
        params = dict(c["params"])
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": len(c["points"]),
            "segments_count": 1,
            "config": {
                "params": params,
                "hnsw_config": c["hnsw"],
                "optimizer_config": c["optimizers"],
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": c.get("quantization"),
                "metadata": c.get("metadata"),
            },
            "payload_schema": c["payload_schema"],
        }

    def create(self, name: str, body: dict) -> None:
        hnsw = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000}
        hnsw.update({k: v for k, v in (body.get("hnsw_config") or {}).items() if v is not None})
        optimizers = {
            "deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
            "indexing_threshold": 10000, "flush_interval_sec": 5,
        }
        optimizers.update({k: v for k, v in (body.get("optimizers_config") or {}).items() if v is not None})
        params = {
            "vectors": body["vectors"],
            "sparse_vectors": body.get("sparse_vectors"),
            "shard_number": body.get("shard_number") or 1,
            "replication_factor": body.get("replication_factor") or 1,
            "write_consistency_factor": body.get("write_consistency_factor") or 1,
            "on_disk_payload": True if body.get("on_disk_payload") is None else body["on_disk_payload"],
        }
        if body.get("sparse_vectors"):
            params["sparse_vectors"] = body["sparse_vectors"]
        self.collections[name] = {
            "params": params, "hnsw": hnsw, "optimizers": optimizers,
            "quantization": body.get("quantization_config"), "metadata": body.get("metadata"),
            "points": {}, "payload_schema": {},
        }

    def update(self, name: str, body: dict) -> None:
        c = self.collections[name]
        for key, target in (("hnsw_config", c["hnsw"]), ("optimizers_config", c["optimizers"])):
            target.update({k: v for k, v in (body.get(key) or {}).items() if v is not None})
        if body.get("metadata") is not None:
            meta = dict(c.get("metadata") or {})
            meta.update(body["metadata"])  # merged, like the server
            c["metadata"] = meta

    def scroll(self, name: str, body: dict) -> dict:
        """Points in id order from ``offset``, ``limit`` of them, payload keys as asked."""
        ids = sorted(self.points(name), key=str)
        if body.get("offset") is not None:
            ids = [i for i in ids if str(i) >= str(body["offset"])]
        limit = int(body.get("limit") or 10)
        want = body.get("with_payload", True)
        page = []
        for pid in ids[:limit]:
            p = self.points(name)[pid]
            payload = p.get("payload") or {}
            if isinstance(want, list):
                payload = {k: v for k, v in payload.items() if k in want}
            elif not want:
                payload = None
            page.append({"id": pid, "payload": payload, "vector": p.get("vector") if body.get("with_vector") else None})
        return {"points": page, "next_page_offset": ids[limit] if len(ids) > limit else None}

    def retrieve(self, name: str, body: dict) -> list:
        want, store = body.get("with_payload", True), self.points(name)
        return [{"id": pid, "payload": (store[pid].get("payload") or {}) if want else None,
                 "vector": store[pid].get("vector") if body.get("with_vector") else None}
                for pid in body.get("ids", []) if pid in store]

    # -- serving -------------------------------------------------------------------------

    def start(self) -> "StandIn":
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                if standin.api_key is not None and self.headers.get("api-key") != standin.api_key:
                    # like a careless proxy: the error body echoes the request's headers, key included
                    self._reply(401, {"status": {"error": "Unauthorized"}, "headers": dict(self.headers)})
                    return
                entry = {
                    "method": method, "path": parts.path, "wait": query.get("wait", [None])[0],
                    "start": time.monotonic(), "body": body,
                }
                code, payload = standin.dispatch(method, parts.path, body, entry)
                entry["end"] = time.monotonic()
                entry["code"] = code
                with standin.lock:
                    standin.log.append(entry)
                self._reply(code, payload)

            def do_GET(self):
                self._handle("GET")

            def do_PUT(self):
                self._handle("PUT")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def _fault_for(self, op: str) -> str | None:
        if self.always_fail in (op, "any"):
            return "503"
        with self.lock:
            if self.faults and self.faults[0][0] in (op, "any"):
                return self.faults.popleft()[1]
        return None

    def dispatch(self, method: str, path: str, body, entry: dict) -> tuple[int, dict]:
        if path in ("", "/"):
            return 200, {"title": "qdrant stand-in", "version": VERSION}
        m = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not m:
            return 404, {"status": {"error": f"no route {path}"}}
        name, rest = m.group(1), m.group(2) or ""
        if rest == "/exists" and method == "GET":
            return 200, _ok({"exists": name in self.collections})
        if rest == "" and method == "PUT":
            with self.lock:
                if name in self.collections:
                    return 409, {"status": {"error": f"Collection `{name}` already exists!"}}
                self.create(name, body)
            return 200, _ok(True)
        if name not in self.collections:
            return 404, {"status": {"error": f"Not found: Collection `{name}` doesn't exist!"}}
        if rest == "" and method == "GET":
            with self.lock:
                return 200, _ok(self.info(name))
        if rest == "" and method == "DELETE":
            with self.lock:
                del self.collections[name]
            return 200, _ok(True)
        if rest == "" and method == "PATCH":
            with self.lock:
                self.update(name, body)
            return 200, _ok(True)
        if rest == "/index" and method == "PUT":
            with self.lock:
                self.collections[name]["payload_schema"][body["field_name"]] = {
                    "data_type": body.get("field_schema") if isinstance(body.get("field_schema"), str)
                    else (body.get("field_schema") or {}).get("type"),
                    "points": 0,
                }
            return 200, _ok({"operation_id": 0, "status": "completed"})
        if rest == "/points/count" and method == "POST":
            with self.lock:
                flt = (body or {}).get("filter")
                points = self.points(name)
                return 200, _ok({"count": sum(1 for pid, p in points.items() if flt is None or _matches(p, pid, flt))})
        if rest == "/points" and method == "POST":  # retrieve by ids
            with self.lock:
                points = self.points(name)
                return 200, _ok([{"id": pid, "payload": points[pid].get("payload") if body.get("with_payload") else None,
                                  "vector": points[pid].get("vector") if body.get("with_vector") else None}
                                 for pid in body["ids"] if pid in points])
        if rest == "/points/scroll" and method == "POST":
            with self.lock:
                return 200, _ok(self.scroll(name, body or {}))
        if rest == "/points" and method == "POST":  # retrieve by ids
            with self.lock:
                return 200, _ok(self.retrieve(name, body or {}))
        if rest == "/points" and method == "PUT":
            return self._write("upsert", name, body, entry)
        if rest == "/points/delete" and method == "POST":
            return self._write("delete", name, body, entry)
        return 404, {"status": {"error": f"no route {method} {path}"}}

    def _apply(self, op: str, name: str, body: dict) -> None:
        with self.lock:
            store = self.points(name)
            if op == "upsert" and self.drop_writes:
                return
            if op == "upsert":
                for p in body["points"]:
                    store[p["id"]] = {"vector": p.get("vector"), "payload": p.get("payload")}
                    self.applied[p["id"]] = self.applied.get(p["id"], 0) + 1
            elif "points" in body:
                for pid in body["points"]:
                    store.pop(pid, None)
            else:
                flt = body["filter"]
                for pid in [pid for pid, p in store.items() if _matches(p, pid, flt)]:
                    del store[pid]

    def _write(self, op: str, name: str, body: dict, entry: dict) -> tuple[int, dict]:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return self._write_inner(op, name, body, entry)
        finally:
            with self.lock:
                self.active -= 1

    def _write_inner(self, op: str, name: str, body: dict, entry: dict) -> tuple[int, dict]:
        fault = self._fault_for(op)
        entry["fault"] = fault
        if fault == "503":
            return 503, {"status": {"error": "Service Unavailable: stand-in fault"}}
        if self.write_delay_s:
            time.sleep(self.write_delay_s)
        self._apply(op, name, body)
        if fault == "timeout":
            time.sleep(self.sleep_s)  # applied, but the answer comes after the client gave up
        return 200, _ok({"operation_id": 1, "status": "acknowledged" if entry["wait"] != "true" else "completed"})


@pytest.fixture
def standin():
    server = StandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def examples_store(tmp_path_factory, tiny_model_dir):
    """examples/docs ingested through the Python pipeline into an embedded store (tiny model)."""
    from pathlib import Path

    from sgpt_qdrant.ingest import StoreTarget, ingest_paths

    path = tmp_path_factory.mktemp("examples") / "qdrant"
    docs = Path(__file__).resolve().parents[1] / "examples" / "docs"
    summary = ingest_paths([str(docs)], store=StoreTarget(str(path)), model=str(tiny_model_dir))
    assert summary.ingested == len(list(docs.iterdir())) and summary.failed == 0
    return path


@pytest.fixture(scope="module")
def isolated_export_cache(tmp_path_factory):
    """SGPT_CACHE_DIR pointed at a fresh folder for one test module (ONNX and FastEmbed exports)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SGPT_CACHE_DIR", str(tmp_path_factory.mktemp("sgpt-cache")))
    yield
    mp.undo()
