"""Ray Data ingest vs in-process on a skewed corpus: chunks/s and the spread of work per actor.

Real corpora are skewed: document sizes differ by orders of magnitude, so static shares
(``--partition K/N``) are unequal. This writes a corpus whose file sizes span 1 to 10^k
sentences, ingests it into a fresh embedded store once in-process and once on a local Ray
(``--actors`` embedding actors), and prints

* chunks/s of each path (same points: the Ray run is checked against the in-process one),
* chunks embedded per Ray actor (dynamic balancing: work goes to whichever actor is free),
* chunks per share had the same corpus been split with ``--partition K/N`` for N = actors.

    python benchmarks/ray_ingest.py --actors 2 --files 40 --max-exp 3

The model is a random checkpoint (``--shape tiny``, the default: the pipeline shows; or
``--shape 125m``: the real model's compute). Needs the ``[ray]`` extra.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

WORDS = ("river bridge stone water morning light garden letter window harbour market winter summer "
         "train station road field forest mountain village city council meeting bread lamp tower ship "
         "sailor keeper storm wind cloud rain season history map archive museum school teacher student").split()


def write_skewed_corpus(root: Path, files: int, max_exp: int, seed: int = 0) -> list[int]:
    """File i has about 10^e sentences, e cycling 0..max_exp: sizes differ by orders of magnitude."""
    rng = random.Random(seed)
    sizes = []
    for i in range(files):
        n = max(1, int(10 ** (i % (max_exp + 1)) * rng.uniform(0.5, 1.5)))
        text = " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "."
                        for _ in range(n))
        (root / f"doc{i:04d}.txt").write_text(f"Document {i}\n\n{text}\n")
        sizes.append(n)
    return sizes


def ingest(store_path: Path, docs: Path, model_dir: Path, *, ray_options, batch_size: int) -> dict:
    """One ``ingest_paths`` run into a fresh embedded store: seconds, chunks and the stored vectors."""
    from sgpt_qdrant.ingest.edge import EdgeClient

    from sgpt_qdrant import IngestOptions, ingest_paths
    from sgpt_qdrant.ingest import StoreTarget

    start = time.perf_counter()
    summary = ingest_paths([docs], store=StoreTarget(store_path), model=str(model_dir),
                           options=IngestOptions(batch_size=batch_size, device="cpu", ray=ray_options))
    out = {"seconds": time.perf_counter() - start, "chunks": summary.chunks_written,
           "model_load_seconds": summary.model_load_seconds}
    with closing(EdgeClient(store_path)) as client:
        points, _ = client.scroll("documents", limit=1_000_000, with_payload=["doc_id"], with_vectors=True)
    out["points"] = {str(p.id): p.vector["text-dense"] for p in points}
    out["chunks_per_doc"] = dict(Counter(p.payload["doc_id"] for p in points))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--max-exp", type=int, default=3, help="largest file: about 10^max_exp sentences")
    ap.add_argument("--actors", type=int, default=2, help="Ray embedding actors (and N of the static split)")
    ap.add_argument("--cpus", type=int, default=None,
                    help="local Ray CPUs (default: actors + 1: one per actor, one for reading and writing)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shape", choices=["tiny", "125m"], default="tiny")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import ray

    from sgpt_qdrant import RayOptions
    from sgpt_qdrant.ingest.partition import share_of
    from sgpt_qdrant.testing import SHAPE_125M, write_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = root / "docs"
        docs.mkdir()
        sizes = write_skewed_corpus(docs, args.files, args.max_exp)
        shape = {"shape": SHAPE_125M} if args.shape == "125m" else {}
        model_dir = write_random_checkpoint(root / "model", **shape)

        local = ingest(root / "local", docs, model_dir, ray_options=None, batch_size=args.batch_size)
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus or args.actors + 1, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - start
        per_actor: dict[str, int] = {}
        try:
            on_ray = ingest(root / "ray", docs, model_dir, batch_size=args.batch_size,
                            ray_options=RayOptions(actors=args.actors, on_actor_chunks=per_actor.update))
        finally:
            ray.shutdown()
    assert on_ray["points"].keys() == local["points"].keys()
    worst = max(float(np.max(np.abs(np.subtract(on_ray["points"][k], v)))) for k, v in local["points"].items())
    shares = [0] * args.actors
    for doc_id, n in local["chunks_per_doc"].items():
        shares[share_of(doc_id, args.actors) - 1] += n

    result = {
        "files": args.files, "sentences_min_max": [min(sizes), max(sizes)], "chunks": local["chunks"],
        "largest_file_chunks": max(local["chunks_per_doc"].values()),
        "shape": args.shape, "batch_size": args.batch_size, "actors": args.actors,
        "in_process_seconds": round(local["seconds"], 2),
        "in_process_model_load_seconds": round(local["model_load_seconds"], 2),
        "in_process_chunks_per_s": round(local["chunks"] / local["seconds"], 1),
        "ray_init_seconds": round(ray_start, 2),
        "ray_seconds": round(on_ray["seconds"], 2),
        "ray_chunks_per_s": round(on_ray["chunks"] / on_ray["seconds"], 1),
        "ray_chunks_per_actor": sorted(per_actor.values(), reverse=True),
        "partition_chunks_per_share": sorted(shares, reverse=True),
        "max_abs_vector_difference": worst,
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:30s} {value}")


if __name__ == "__main__":
    main()
