"""How long does an unchanged re-run spend reading the store's state, per stored chunk?

An unchanged ``sgpt-ingest`` re-run reads one payload subset per stored point
(:func:`ingest.store.read_state`) before it decides that nothing is to be done; the bar is 0.1 ms
per stored chunk. This fills an embedded store (Qdrant Edge) with ``--points`` synthetic points of
the shape sgpt-ingest writes (:func:`ingest.schema.make_points`: LlamaIndex node payloads, random
32-d vectors, ``--chunks-per-doc`` chunks per document, the collection made by
``ensure_collection`` with its keyword indexes), then times ``read_state`` ``--repeat`` times in
this process and prints the fastest and the median, in ms per point.

    python benchmarks/state_read.py [--points 100000] [--store /tmp/state-100k] [--repeat 5]

A ``--store`` folder that already holds the collection with that many points is reused as it is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from sgpt_qdrant.ingest import collection_config as cc
from sgpt_qdrant.ingest import schema, store
from sgpt_qdrant.chunk import Chunk
from sgpt_qdrant.ingest.edge import EdgeClient

NAME = "documents"
DIM = 32


def fill(client: EdgeClient, points: int, per_doc: int, rng: np.random.Generator) -> None:
    cc.ensure_collection(client, NAME, DIM, vector_name=schema.VECTOR_NAME)
    text = "Bees find flowers by scent and colour; a hive keeps its temperature within a degree. " * 3
    batch: list = []
    for d in range(0, (points + per_doc - 1) // per_doc):
        n = min(per_doc, points - d * per_doc)
        doc_id = f"docs/section-{d // 100}/page-{d}.md"
        chunks = [Chunk(i, f"{text} ({d}.{i})", i * 300, i * 300 + len(text), 75) for i in range(n)]
        vectors = rng.standard_normal((n, DIM), dtype=np.float32)
        batch += schema.make_points(doc_id, f"/data/{doc_id}", chunks, vectors, chunk_count=n,
                                    content_hash=f"{d:064x}", version=f"{d % 7:032x}", model="/models/sgpt")
        if len(batch) >= 2048:
            client.upsert(NAME, batch)
            batch = []
    if batch:
        client.upsert(NAME, batch)
    client.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--chunks-per-doc", type=int, default=10)
    ap.add_argument("--store", default="/tmp/state-100k")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    client = EdgeClient(args.store)
    have = client.count(NAME).count if client.collection_exists(NAME) else 0
    if have != args.points:
        if have:
            client.delete_collection(NAME)
        t = time.perf_counter()
        fill(client, args.points, args.chunks_per_doc, np.random.default_rng(0))
        print(f"filled {args.points:,} points in {time.perf_counter() - t:.1f}s")
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        state = store.read_state(client, NAME)
        times.append(time.perf_counter() - t)
    client.close()
    stored = sum(d.points for d in state.values())
    assert stored == args.points, (stored, args.points)
    per = [s * 1000 / args.points for s in times]
    print(f"read_state of {args.points:,} points ({len(state):,} documents), {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}: fastest {min(times):.2f}s = {min(per):.4f} ms/point, median "
          f"{statistics.median(times):.2f}s = {statistics.median(per):.4f} ms/point")


if __name__ == "__main__":
    main()
