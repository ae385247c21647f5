"""The embedded store at a million chunks: what sgpt-ingest and a reader cost there.

A generated Markdown corpus (ingest_throughput's generator, seeded) sized to about ``--chunks``
chunks, ingested by the installed ``sgpt-ingest`` with a tiny random model (GPT-Neo 2 layers,
hidden 32: the machinery, not the model) into an embedded store, then, each in a fresh process
as a user runs it:

1. the first ingest: wall time, chunks/s, peak RSS (bar at 1M: <= 2 GB);
2. opening the store (``EdgeClient`` + an exact count);
3. top-10 queries, exact search: p50/p95 over ``--queries`` stored vectors used as queries,
   without and with a ``doc_id`` filter;
4. the unchanged re-run: wall time and ms per stored chunk;
5. ``sgpt-ingest --index`` (HNSW in a child; it prints recall@10 against exact search), then the
   queries of 3 again.

    python benchmarks/store_at_size.py --chunks 1000000 --work-dir /big/disk/folder

The work folder keeps the corpus and the store (about 3 KB of disk per chunk); a second run
with the same folder reuses the corpus. Figures are printed as each step ends.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import ingest_throughput
from ingest_throughput import _timed_command, write_corpus

#: Chunks per generated file at the generator's default sizes (measured: 608,382 chunks from 22,222 files).
CHUNKS_PER_FILE = 27

_QUERY_CODE = r"""
import json, statistics, sys, time
import numpy as np
from qdrant_client import models
from sgpt_qdrant.ingest.edge import EdgeClient
store, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
client = EdgeClient(store, create=False)
count = client.count("documents", exact=True).count
opened = time.perf_counter() - t
points, _ = client.scroll("documents", limit=n, with_vectors=True, with_payload=["doc_id"])
def times(flt):
    out = []
    for p in points:
        vector = p.vector["text-dense"] if isinstance(p.vector, dict) else p.vector
        t = time.perf_counter()
        client.query_points("documents", query=vector, using="text-dense", limit=10, query_filter=flt(p))
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return {"p50": statistics.median(out), "p95": out[int(0.95 * (len(out) - 1))]}
plain = times(lambda p: None)
doc = times(lambda p: models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=p.payload["doc_id"]))]))
client.close()
print(json.dumps({"count": count, "open_s": opened, "plain": plain, "doc_filter": doc}))
"""


def queries(store: Path, n: int, label: str) -> None:
    out = subprocess.run([sys.executable, "-c", _QUERY_CODE, str(store), str(n)], capture_output=True, text=True)
    if out.returncode:
        print(f"queries ({label}) failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{label}: store of {r['count']} points opened in {r['open_s']:.2f}s (fresh process); top-10 query p50/p95 "
          f"{r['plain']['p50']:.1f}/{r['plain']['p95']:.1f} ms, with a doc_id filter "
          f"{r['doc_filter']['p50']:.1f}/{r['doc_filter']['p95']:.1f} ms ({n} queries)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1_000_000, help="about this many chunks")
    ap.add_argument("--work-dir", required=True, help="corpus and store go here (kept)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-index", action="store_true", help="skip the HNSW step")
    args = ap.parse_args()
    from sgpt_qdrant.cli_util import sleeping_cpu_threads
    from sgpt_qdrant.testing import write_random_checkpoint

    sleeping_cpu_threads()  # as the command does; its child processes inherit it
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "tiny"
    if not (model / "modules.json").is_file():
        write_random_checkpoint(model)
    corpus = work / f"corpus-{args.chunks}"
    if not corpus.is_dir():
        t = time.perf_counter()
        write_corpus(corpus, max(1, args.chunks // CHUNKS_PER_FILE), seed=7)
        files = sum(1 for _ in corpus.rglob("*.md"))
        size = sum(p.stat().st_size for p in corpus.rglob("*.md"))
        print(f"corpus: {files} files, {size / 1e6:.0f} MB written in {time.perf_counter() - t:.0f}s", flush=True)
    store = work / f"store-{args.chunks}"
    base = [str(corpus), "--model", str(model), "--qdrant-path", str(store), "--quiet"]
    wall, rss, rc = _timed_command(base)
    from sgpt_qdrant.ingest.edge import EdgeClient

    with EdgeClient(store, create=False) as client:
        chunks = client.count("documents", exact=True).count
    print(f"first ingest: {chunks} chunks in {wall:.0f}s = {chunks / wall:.0f} chunks/s, peak RSS {rss:.0f} MB, "
          f"anonymous {ingest_throughput.LAST_PEAK_ANON_MB:.0f} MB (the rest: the store's files, mapped) "
          f"(exit {rc})", flush=True)
    queries(store, args.queries, "exact search")
    wall, rss, rc = _timed_command(base)
    print(f"unchanged re-run: {wall:.1f}s = {wall / chunks * 1000:.3f} ms per stored chunk, peak RSS {rss:.0f} MB, "
          f"anonymous {ingest_throughput.LAST_PEAK_ANON_MB:.0f} MB (exit {rc})", flush=True)
    if not args.no_index:
        t = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).parent / "sgpt-ingest"), *base[:-1], "--index"],
                             capture_output=True, text=True)
        said = [line for line in out.stderr.splitlines() if "HNSW" in line or "recall" in line]
        print(f"--index: {time.perf_counter() - t:.0f}s (exit {out.returncode}): {' | '.join(said)}", flush=True)
        queries(store, args.queries, "after --index")


if __name__ == "__main__":
    main()
