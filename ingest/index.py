"""The HNSW build of an embedded collection, in a child process, and its recall against exact search.

Why a child: Qdrant Edge's ``optimize()`` blocks and holds the GIL (483 s for 100k 768-d points on 2
cores), so a build in the process that reports progress would freeze it. The parent releases the
store (one process per store), starts ``python -m sgpt_qdrant.ingest.index``, and reports the
elapsed time while it waits. A build that is killed leaves the collection as it was (Edge swaps an
optimised segment in whole); the next ``--index`` builds again.

Search stays exact until a build: brute force over the vectors (tens of ms at 100k points), with
no recall loss. The build reports recall@10 of HNSW against exact search for a sample of the
collection's own vectors used as queries: random vectors are HNSW's worst case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["IndexReport", "build_index", "build_index_in_child", "recall_at_k"]


@dataclass
class IndexReport:
    collection: str
    points: int
    indexed_vectors: int
    seconds: float
    recall_at_10: float | None  # HNSW vs exact search, the collection's own vectors as queries
    samples: int


def recall_at_k(client, collection: str, *, k: int = 10, samples: int = 100, using: str | None = None) -> tuple[float, int]:
    """Mean overlap of the default (HNSW once built) and the exact top-k, for stored vectors as queries."""
    from qdrant_client import models

    points, _ = client.scroll(collection, limit=samples, with_payload=False, with_vectors=True)
    hits = total = 0
    for p in points:
        vector = p.vector
        if isinstance(vector, dict):
            name = using or next((n for n, v in vector.items() if isinstance(v, list)), None)
            if name is None:
                continue
            vector = vector[name]
        else:
            name = using
        fast = client.query_points(collection, query=vector, using=name, limit=k, with_payload=False).points
        exact = client.query_points(collection, query=vector, using=name, limit=k, with_payload=False,
                                    search_params=models.SearchParams(exact=True)).points
        hits += len({q.id for q in fast} & {q.id for q in exact})
        total += len(exact)
    return (hits / total if total else 1.0), len(points)


def build_index(path: str, collection: str, *, samples: int = 100) -> IndexReport:
    """In this process: build HNSW for ``collection`` of the store in ``path`` and measure its recall."""
    from .client import open_embedded

    client = open_embedded(path, create=False)
    try:
        started = time.perf_counter()
        client.optimize(collection, index=True)
        seconds = time.perf_counter() - started
        info = client.get_collection(collection)
        recall, n = recall_at_k(client, collection, samples=samples)
        return IndexReport(collection, info.points_count or 0, info.indexed_vectors_count or 0, seconds, recall, n)
    finally:
        client.close()


def build_index_in_child(path: str, collection: str, *, on_wait: Callable[[float], None] | None = None,
                         every: float = 5.0) -> IndexReport:
    """:func:`build_index` in a child process; ``on_wait(elapsed)`` every ``every`` seconds meanwhile.
    The store must not be open in this process. Ctrl-C stops the child."""
    proc = subprocess.Popen([sys.executable, "-m", "sgpt_qdrant.ingest.index", str(path), collection],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    started = time.monotonic()
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=every)
                break
            except subprocess.TimeoutExpired:
                if on_wait is not None:
                    on_wait(time.monotonic() - started)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"the HNSW build of collection {collection!r} failed: {last}")
    return IndexReport(**json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    path, collection = (argv or sys.argv[1:])[:2]
    try:
        report = build_index(path, collection)
    except Exception as exc:  # noqa: BLE001 - one line for the parent
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
