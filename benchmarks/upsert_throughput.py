"""Upsert throughput to a Qdrant server through ingest.upload.Uploader: points/s by transport,
batch size and requests in flight, against the naive peer (one blocking wait=True batch at a time).

    QDRANT_URL=http://localhost:6333 [QDRANT_API_KEY=...] python benchmarks/upsert_throughput.py \
        [--points 100000] [--dim 768] [--transports rest,grpc] [--batch-sizes 64,256,1024] [--in-flight 1,4,8]

Each configuration writes into a fresh collection (deleted afterwards) and is timed up to the
end of the Uploader's final wait=True request, so "points/s" counts points the server has
applied. Skips with a message (exit 0) when no server answers at QDRANT_URL within 2 s.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import httpx
import numpy as np
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest.client import api_key_from_env, client_url, describe
from sgpt_qdrant.ingest.upload import Uploader


def reachable(url: str, api_key: str | None) -> str | None:
    """The server's version, or None when nothing answers quickly."""
    try:
        headers = {"api-key": api_key} if api_key else {}
        response = httpx.get(url.rstrip("/") + "/", headers=headers, timeout=2.0)
        return response.json().get("version", "?") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def make_points(n: int, dim: int, pool_size: int = 4096) -> list[models.PointStruct]:
    """n points sharing a pool of random unit vectors (ids and payloads differ): cheap to hold."""
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((min(n, pool_size), dim), dtype=np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    vectors = pool.tolist()
    ns = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
    return [
        models.PointStruct.model_construct(
            id=str(uuid.uuid5(ns, f"bench#{i}")), vector=vectors[i % len(vectors)],
            payload={"doc_id": f"doc{i // 20}", "chunk": i % 20, "text": "x" * 300},
        )
        for i in range(n)
    ]


def run_one(client: QdrantClient, points, dim: int, batch: int, in_flight: int, wait: bool) -> float:
    name = f"upsert_bench_{uuid.uuid4().hex[:8]}"
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    try:
        t0 = time.perf_counter()
        with Uploader(client, name, batch_size=batch, max_in_flight=in_flight, wait=wait) as up:
            up.upsert(points)
        seconds = time.perf_counter() - t0
        stored = client.count(name, exact=True).count
        if stored != len(points):
            raise SystemExit(f"{name}: {stored} points stored, {len(points)} written")
        return len(points) / seconds
    finally:
        client.delete_collection(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--transports", default="rest,grpc")
    ap.add_argument("--batch-sizes", default="64,256,1024")
    ap.add_argument("--in-flight", default="1,4,8")
    ap.add_argument("--grpc-port", type=int, default=6334)
    ap.add_argument("--timeout", type=int, default=60)
    args = ap.parse_args()

    url = os.environ.get("QDRANT_URL")
    api_key = api_key_from_env()  # stripped; never printed
    if not url:
        print("skipped: set QDRANT_URL to a Qdrant server (e.g. http://localhost:6333)")
        return
    version = reachable(url, api_key)
    if version is None:
        print(f"skipped: no Qdrant server reachable at {url} (2 s timeout)")
        return
    points = make_points(args.points, args.dim)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    flights = [int(f) for f in args.in_flight.split(",")]
    print(f"Qdrant {version}, {args.points:,} points of {args.dim}-d, fresh collection per run")
    print(f"{'transport':>9} {'batch':>6} {'in flight':>9} {'wait':>5} {'points/s':>10} {'vs naive':>9}")
    for transport in args.transports.split(","):
        client = QdrantClient(
            url=url, api_key=api_key, prefer_grpc=transport == "grpc", grpc_port=args.grpc_port,
            timeout=args.timeout, check_compatibility=False,
        )
        try:
            naive = run_one(client, points, args.dim, 256, 1, True)
            print(f"{transport:>9} {256:>6} {1:>9} {'True':>5} {naive:>10,.0f} {1.0:>8.2f}x  (naive peer)", flush=True)
            for batch in batches:
                for flight in flights:
                    rate = run_one(client, points, args.dim, batch, flight, False)
                    print(f"{transport:>9} {batch:>6} {flight:>9} {'False':>5} {rate:>10,.0f} {rate / naive:>8.2f}x",
                          flush=True)
        except Exception as exc:  # e.g. gRPC port closed: report and go on with the next transport
            print(f"{transport:>9} failed at {client_url(client)}: {describe(exc)}")  # no raw body: no key
        finally:
            client.close()


if __name__ == "__main__":
    main()
