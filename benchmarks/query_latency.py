"""A query process with torch (Encoder) next to one with Qdrant's own inference (FastEmbed, no torch).

Each path runs in a fresh interpreter, as a query service would: cold = from process start to
the first query's hits (imports, model load, first query), warm = the median of the following
queries, and the process's peak RSS. Both query the same in-memory Qdrant collection (2,000
random unit vectors, top 5), so the search cost is the same and small; the difference is the
query embedding and what the process has to load for it.

    python benchmarks/query_latency.py [--model ID_OR_PATH] [--queries 20]

Without --model it builds a random checkpoint of the published model's shape (GPT-Neo-125M +
five 768x768 Dense: the same compute and memory as the Hub weights) under a temp folder, and
exports it with sgpt-export-fastembed's function first (not timed). Prints the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

QUERIES = ["how do bees find flowers", "why are there two tides a day",
           "Sourdough needs a starter of wild yeast and lactic acid bacteria, fed with flour and water; "
           "how long does it take before the first loaf can be baked, and what goes wrong most often?"]

_CHILD = r'''
import json, statistics, sys, time
t0 = time.perf_counter()
def peak_rss_mib():  # VmHWM is this process's own; ru_maxrss would carry the parent's peak across exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, model, n, dim = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
queries = json.loads(sys.argv[5])
import numpy as np
from qdrant_client import QdrantClient, models
if path == "torch":
    from sgpt_qdrant import Encoder
    encoder = Encoder(model, device="cpu", dtype="fp32")
    make = lambda q: encoder.encode([q])[0].tolist()
else:
    from sgpt_qdrant.fastembed_register import register_fastembed
    sgpt = register_fastembed(model)
    make = lambda q: models.Document(text=q, model=sgpt.name, options=sgpt.options)
client = QdrantClient(":memory:")
client.create_collection("c", vectors_config={"text-dense": models.VectorParams(size=dim, distance=models.Distance.COSINE)})
vectors = np.random.default_rng(0).standard_normal((2000, dim), dtype=np.float32)
client.upload_collection("c", vectors={"text-dense": vectors}, ids=list(range(2000)), wait=True)
t_ready = time.perf_counter()
client.query_points("c", query=make(queries[0]), using="text-dense", limit=5)
cold = time.perf_counter() - t0
warm = []
for i in range(n):
    q = queries[i % len(queries)]
    t = time.perf_counter()
    client.query_points("c", query=make(q), using="text-dense", limit=5)
    warm.append(time.perf_counter() - t)
short = [w for i, w in enumerate(warm) if i % len(queries) < 2]
print(json.dumps({"cold_s": cold, "first_query_s": cold - (t_ready - t0), "warm_ms": statistics.median(warm) * 1000,
                  "warm_short_ms": statistics.median(short) * 1000,
                  "peak_rss_mib": peak_rss_mib(),
                  "torch_imported": "torch" in sys.modules}))
'''


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(path: str, model: str, queries: int, dim: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, path, model, str(queries), str(dim), json.dumps(QUERIES)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{path} child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: a random one of the 125M shape)")
    ap.add_argument("--queries", type=int, default=20, help="warm queries per path")
    ap.add_argument("--repeat", type=int, default=2, help="fresh processes per path (the best cold start is kept)")
    args = ap.parse_args()

    from sgpt_qdrant import checkpoint as ckpt
    from sgpt_qdrant.fastembed_export import export_fastembed

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from sgpt_qdrant.testing import SHAPE_125M, write_random_checkpoint

            model = str(write_random_checkpoint(Path(tmp) / "sgpt-125m-random", shape=SHAPE_125M))
        dim = ckpt.load(model).dimension
        folder = str(export_fastembed(model))
        import os
        import torch

        print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores; torch threads {torch.get_num_threads()})")
        print(f"model: {args.model or 'random weights, GPT-Neo-125M + 5 Dense shape'}; {args.queries} warm queries, "
              f"best of {args.repeat} fresh processes per path")
        print(f"{'path':<22}{'cold start → hits':>18}{'warm (median)':>15}{'warm, short q':>15}"
              f"{'peak RSS':>11}  torch loaded")
        for path, label in (("torch", "torch (Encoder fp32)"), (folder, "FastEmbed (ONNX fp32)")):
            runs = [run(path, model if path == "torch" else folder, args.queries, dim) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["cold_s"])
            warm = min(r["warm_ms"] for r in runs)
            short = min(r["warm_short_ms"] for r in runs)
            rss = max(r["peak_rss_mib"] for r in runs)
            print(f"{label:<22}{best['cold_s']:>16.2f} s{warm:>12.1f} ms"
                  f"{short:>12.1f} ms{rss:>8.0f} MiB  {best['torch_imported']}")


if __name__ == "__main__":
    main()
