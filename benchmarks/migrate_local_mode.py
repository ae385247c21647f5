"""sgpt-store migrate on a local-mode store of N ingest-shaped points, against the peer migration.

The peer is what a user would write with qdrant-client alone: open the folder with
``QdrantClient(path=...)`` (which unpickles every row, running whatever a row holds), scroll every
point with vectors and upsert it into the Edge store. Both run in a fresh process each, on the same
store; the figures are wall time, points per second and the child's peak RSS.

The store is written in qdrant-client's own format (its ``CollectionPersistence.encode_key`` and a
pickled ``PointStruct`` per row, as ``persist`` writes them) in one SQLite transaction, since
local mode's own upsert syncs every point (minutes for 20k).

    python benchmarks/migrate_local_mode.py [--points 20000] [--dim 768]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

CHILD_MIGRATE = """
import resource, sys, time
from sgpt_qdrant.ingest import copy, edge, legacy_local  # imported before the clock starts, as in the peer
from sgpt_qdrant.ingest.store_cli import migrate_store
t = time.perf_counter()
summary = migrate_store(sys.argv[1])
print(summary["points"], time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CHILD_PEER = """
import resource, sys, time
from qdrant_client import QdrantClient, models
from sgpt_qdrant.ingest.edge import EdgeClient
t = time.perf_counter()
source = QdrantClient(path=sys.argv[1])
info = source.get_collection("documents")
target = EdgeClient(sys.argv[2])
target.create_collection("documents", vectors_config=info.config.params.vectors)
offset, n = None, 0
while True:
    page, offset = source.scroll("documents", limit=256, offset=offset, with_payload=True, with_vectors=True)
    target.upsert("documents", [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in page])
    n += len(page)
    if offset is None:
        break
target.close()
source.close()
print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def payload(i: int) -> dict:
    """The layout sgpt-ingest writes (LlamaIndex node metadata), about 1.6 KB."""
    text = f"Chunk {i} of the guide. " + "Words of a documentation page, about seventy tokens long. " * 8
    doc = f"guide/part{i // 20}.md"
    return {
        "file_path": doc, "file_name": Path(doc).name, "chunk_index": i % 20, "chunk_count": 20,
        "char_start": 0, "char_end": len(text), "content_hash": uuid.uuid5(uuid.NAMESPACE_URL, doc).hex,
        "ingest_version": "v1:" + "0" * 40, "model": "tiny",
        "_node_content": json.dumps({"id_": str(i), "text": text, "metadata": {}}),
        "_node_type": "TextNode", "document_id": doc, "doc_id": doc, "ref_doc_id": doc,
    }


def write_store(path: Path, n: int, dim: int) -> None:
    import numpy as np
    from qdrant_client import QdrantClient, models
    from qdrant_client._pydantic_compat import construct
    from qdrant_client.local.persistence import CollectionPersistence

    client = QdrantClient(path=str(path))
    client.create_collection("documents", vectors_config={
        "text-dense": models.VectorParams(size=dim, distance=models.Distance.COSINE)})
    client.close()
    rng = np.random.default_rng(0)
    db = sqlite3.connect(path / "collection" / "documents" / "storage.sqlite")
    db.execute("CREATE TABLE IF NOT EXISTS points (id TEXT PRIMARY KEY, point BLOB)")
    with db:
        for start in range(0, n, 1000):
            vectors = rng.standard_normal((min(1000, n - start), dim), dtype=np.float32)
            rows = []
            for k, vector in enumerate(vectors):
                i = start + k
                pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"point{i}"))
                point = construct(models.PointStruct, id=pid, vector={"text-dense": vector.tolist()}, payload=payload(i))
                rows.append((CollectionPersistence.encode_key(pid), sqlite3.Binary(pickle.dumps(point))))
            db.executemany("INSERT INTO points VALUES (?, ?)", rows)
    db.close()


def run(code: str, *args: str) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    n, seconds, rss_kb = out.stdout.split()
    return int(n), float(seconds), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu} ({os.cpu_count()} cores); {args.points} points, {args.dim}-d, ingest-shaped payloads")
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        write_store(template, args.points, args.dim)
        size = sum(p.stat().st_size for p in template.rglob("*") if p.is_file()) / 2**20
        print(f"local-mode store: {size:.0f} MiB")
        shutil.copytree(template, Path(tmp) / "ours")
        n, ours, ours_rss = run(CHILD_MIGRATE, str(Path(tmp) / "ours"))
        assert n == args.points
        n, peer, peer_rss = run(CHILD_PEER, str(template), str(Path(tmp) / "peer"))
        assert n == args.points
    print(f"sgpt-store migrate (restricted unpickler, verified): {ours:7.1f} s  {args.points / ours:7.0f} points/s  "
          f"peak RSS {ours_rss:6.0f} MiB")
    print(f"peer: QdrantClient(path) scroll -> EdgeClient:        {peer:7.1f} s  {args.points / peer:7.0f} points/s  "
          f"peak RSS {peer_rss:6.0f} MiB")
    print(f"ratio (peer / ours): time {peer / ours:.2f}x, RSS {peer_rss / ours_rss:.2f}x")


if __name__ == "__main__":
    main()
