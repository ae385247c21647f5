"""Ingest throughput: chunks/s end to end, and the share of wall time outside the model.

The model has the full SGPT-125M shape with random weights (same compute as the published
one). A synthetic corpus of prose files is ingested into a fresh embedded Qdrant store through
the same code path as ``sgpt-ingest`` (read → chunk → plan → embed → upsert). The peer, measured
in the same run, is the encoder alone on the same chunk texts: the ratio says how close the whole
pipeline comes to the bare model.

    python benchmarks/ingest_throughput.py --files 20 --sentences 30
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

WORDS = ("river bridge stone water morning light garden letter window harbour market winter summer "
         "train station road field forest mountain village city council meeting bread lamp tower ship "
         "sailor keeper storm wind cloud rain season history map archive museum school teacher student "
         "book paper report engine wheel tool worker farmer baker painter colour music song dance").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 22))]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def write_corpus(root: Path, files: int, sentences: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(files):
        paragraphs, left = [], sentences
        while left > 0:
            n = min(left, rng.randint(2, 8))
            paragraphs.append(" ".join(sentence(rng) for _ in range(n)))
            left -= n
        suffix = [".txt", ".md", ".rst"][i % 3]
        (root / f"doc{i:04d}{suffix}").write_text(f"Document {i}\n\n" + "\n\n".join(paragraphs) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--sentences", type=int, default=30, help="sentences per file")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import torch

    from sgpt_qdrant.ingest import store
    from sgpt_qdrant.ingest.collection_config import ensure_collection
    from sgpt_qdrant.ingest.upload import Uploader
    from sgpt_qdrant.ingest.read import find_files
    from sgpt_qdrant.ingest.sync import sync
    from sgpt_qdrant import Encoder
    from sgpt_qdrant.checkpoint import load
    from sgpt_qdrant.testing import SHAPE_125M, write_random_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = write_random_checkpoint(tmp / "model", shape=SHAPE_125M)
        docs = tmp / "docs"
        docs.mkdir()
        write_corpus(docs, args.files, args.sentences)
        checkpoint = load(str(model_dir))
        t = time.perf_counter()
        encoder = Encoder(checkpoint, device="cpu")
        load_s = time.perf_counter() - t
        encoder.encode(["warm up the kernels"] * 8)

        with store.open_client(str(tmp / "qdrant")) as client:
            ensure_collection(client, "bench", encoder.dimension, vector_name=store.VECTOR_NAME)
            store.tune_local(client, "bench")  # as sgpt-ingest does
            files = list(find_files([docs]))
            summary = sync(files, store.read_state(client, "bench"), tokenizer=checkpoint.tokenizer,
                           max_tokens=checkpoint.max_seq_length, model="random-125m", encode=encoder.encode,
                           writer=Uploader(client, "bench", barrier_deletes=False), batch_size=args.batch_size,
                           on_message=lambda m: None)
            texts = []
            offset = None
            while True:
                points, offset = client.scroll("bench", limit=4096, offset=offset, with_payload=["_node_content"])
                texts += [p.payload["_node_content"] for p in points]
                if offset is None:
                    break
        import json

        chunk_texts = [json.loads(t)["text"] for t in texts]
        t = time.perf_counter()
        encoder.encode(chunk_texts)
        peer_s = time.perf_counter() - t

    n = summary.chunks_written
    end_to_end = n / summary.seconds
    peer = n / peer_s
    outside = 1 - summary.embed_seconds / summary.seconds
    mean_tokens = sum(len(x) for x in encoder.tokenize(chunk_texts)) / max(n, 1)
    print(f"corpus: {summary.files_seen} files, {n} chunks (mean {mean_tokens:.1f} tokens); model load {load_s:.1f}s; "
          f"torch threads {torch.get_num_threads()}")
    print(f"end to end (read+chunk+embed+upsert, embedded store): {summary.seconds:.2f}s  {end_to_end:.1f} chunks/s")
    print(f"  of which in the encoder: {summary.embed_seconds:.2f}s; outside the model: {outside:.1%} (target < 10%)")
    print(f"peer, encoder alone on the same chunks: {peer_s:.2f}s  {peer:.1f} chunks/s")
    print(f"ratio end-to-end / encoder-alone: {end_to_end / peer:.3f}")


if __name__ == "__main__":
    main()
