"""Where does the embedded store (Qdrant Edge, exact search until `sgpt-ingest --index`) pass 100 ms per query?

Exact search scans every vector, so query time grows with the collection. This grows one
collection of random unit 768-d vectors step by step in an EdgeClient store (a temporary folder,
a keyword index on doc_id as sgpt-ingest makes) and times `query_points` (top 10) at each size,
without a filter and with a keyword payload filter like the examples use. It stops at the first
size where both medians pass the target, or when the time budget runs out. The size where exact
search stops being fast enough is where `--index` (HNSW) starts to pay.

    python benchmarks/embedded_query_latency.py [--dim 768] [--target-ms 100] [--max-seconds 240] [--index]

``--index``: at the last size, build HNSW as ``sgpt-ingest --index`` does (a child process) and
time the queries again, with recall@10 against exact search (random vectors: HNSW's worst case).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from qdrant_client import models

from sgpt_qdrant.ingest.edge import EdgeClient

SIZES = [2_000, 5_000, 10_000, 20_000, 30_000, 40_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000, 600_000, 800_000, 1_000_000]


def fill(client: EdgeClient, name: str, start: int, stop: int, dim: int, rng: np.random.Generator) -> None:
    step = 2000
    for lo in range(start, stop, step):
        hi = min(stop, lo + step)
        vectors = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        client.upsert(name, [models.PointStruct(id=i, vector=v.tolist(), payload={"doc_id": f"doc{i // 20}"})
                             for i, v in zip(range(lo, hi), vectors)])


def time_queries(client: EdgeClient, name: str, dim: int, rng: np.random.Generator, n: int, flt) -> tuple[float, float]:
    """(median, fastest) milliseconds: the fastest is the figure of a machine nobody else loads."""
    times = []
    for _ in range(n):
        q = rng.standard_normal(dim).astype(np.float32)
        t0 = time.perf_counter()
        client.query_points(name, query=q.tolist(), limit=10, query_filter=flt)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--max-seconds", type=float, default=240.0)
    ap.add_argument("--queries", type=int, default=9)
    ap.add_argument("--index", action="store_true", help="then build HNSW (child process) and time again")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    began = time.monotonic()
    tmp = tempfile.TemporaryDirectory()
    client = EdgeClient(tmp.name)
    name = "bench"
    client.create_collection(name, vectors_config=models.VectorParams(size=args.dim, distance=models.Distance.COSINE))
    client.create_payload_index(name, "doc_id", field_schema=models.PayloadSchemaType.KEYWORD)
    flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="doc7"))])
    print(f"embedded store (Qdrant Edge, exact search), {args.dim}-d cosine, top-10 query_points, median of {args.queries}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'points':>9} {'no filter ms':>13} {'(fastest)':>10} {'filter ms':>10} {'(fastest)':>10}")
    crossed: dict[str, int | None] = {"no filter": None, "filter": None}
    have = 0
    for size in SIZES:
        if time.monotonic() - began > args.max_seconds:
            print(f"(time budget of {args.max_seconds:.0f}s spent)")
            break
        fill(client, name, have, size, args.dim, rng)
        have = size
        plain = time_queries(client, name, args.dim, rng, args.queries, None)
        filtered = time_queries(client, name, args.dim, rng, max(3, args.queries // 2), flt)
        print(f"{size:>9,} {plain[0]:>13.1f} {plain[1]:>10.1f} {filtered[0]:>10.1f} {filtered[1]:>10.1f}", flush=True)
        if plain[0] > args.target_ms and crossed["no filter"] is None:
            crossed["no filter"] = size
        if filtered[0] > args.target_ms and crossed["filter"] is None:
            crossed["filter"] = size
        if all(v is not None for v in crossed.values()):
            break
    for what, size in crossed.items():
        where = f"median first above {args.target_ms:.0f} ms at {size:,} points" if size else "never above the target here"
        print(f"{what}: {where}")
    client.close()
    if args.index:
        from sgpt_qdrant.ingest.index import build_index_in_child

        report = build_index_in_child(tmp.name, name)
        client = EdgeClient(tmp.name)
        plain = time_queries(client, name, args.dim, rng, args.queries, None)
        filtered = time_queries(client, name, args.dim, rng, max(3, args.queries // 2), flt)
        client.close()
        print(f"after --index ({report.indexed_vectors:,} vectors in HNSW, built in {report.seconds:.1f}s): "
              f"{plain[0]:.1f} ms ({plain[1]:.1f}) / filter {filtered[0]:.1f} ms ({filtered[1]:.1f}); recall@10 "
              f"against exact {report.recall_at_10:.3f} over {report.samples} stored vectors")
    tmp.cleanup()
    print(f"total {time.monotonic() - began:.0f}s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
