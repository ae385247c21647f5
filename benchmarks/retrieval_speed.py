"""Query throughput of the retrieval evaluation, and what --sparse bm25 costs the ingest.

    python benchmarks/retrieval_speed.py                       # generated set, random tiny model
    python benchmarks/retrieval_speed.py --data DIR --model M  # any BEIR folder, any checkpoint

1. Ingest: the same generated corpus (one file per document) ingested twice through
   ``ingest_paths``, ``--sparse none`` and ``--sparse bm25``, into fresh stores: chunks/s of each
   and the ratio. With the tiny model embedding is nearly free, so this is BM25's cost at its
   most visible; the real model embeds ~15-40 chunks/s on 2 cores (README), BM25 ~40,000.
2. Queries: every judged query through ``evaluate_beir`` per mode (batches of ``--batch-size`` in
   one ``query_batch_points``, then ranking and metrics), queries/s; then the first 500 queries
   through ``search_batch`` alone against the peer, the same queries one ``query_points`` call
   (and one encoder call) each (``ingest.search.search``), in the same run, and the ratio.

The generated set: ``--docs`` documents of 40-80 words drawn from a 5,000-word pseudo-vocabulary
(Zipf-like), and ``--queries`` queries of 3-6 words taken from one document each (qrels: that
document). Prints the figures; name the CPU with ``lscpu | grep "Model name"``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def generate(folder: Path, docs: int, queries: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "pri", "don", "fel", "gar", "hul"]
    vocab = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(6000)})[:5000]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    folder.mkdir(parents=True, exist_ok=True)
    texts = {}
    with (folder / "corpus.jsonl").open("w") as f:
        for i in range(docs):
            words = rng.choices(vocab, weights, k=rng.randint(40, 80))
            texts[f"d{i}"] = words
            f.write(json.dumps({"_id": f"d{i}", "title": " ".join(words[:3]), "text": " ".join(words)}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    with (folder / "queries.jsonl").open("w") as fq, (folder / "qrels" / "test.tsv").open("w") as fr:
        fr.write("query-id\tcorpus-id\tscore\n")
        for i in range(queries):
            doc = f"d{rng.randrange(docs)}"
            fq.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.sample(texts[doc], rng.randint(3, 6)))}) + "\n")
            fr.write(f"q{i}\t{doc}\t1\n")
    return folder


def ingest_cost(data: Path, encoder, model: str, work: Path, repeats: int = 2) -> None:
    """Fresh stores, --sparse none and bm25 alternating ``repeats`` times (the best of each), then
    BM25 alone on the same chunk texts."""
    from sgpt_qdrant.ingest import IngestOptions, StoreTarget, ingest_paths
    from sgpt_qdrant.ingest.client import open_client
    from sgpt_qdrant.ingest.retrieval_eval import load_beir, write_corpus
    from sgpt_qdrant.ingest.sparse import document_vectors

    corpus = work / "corpus"
    write_corpus(load_beir(data), corpus)
    rates: dict[str, float] = {}
    for r in range(repeats):
        for sparse in ("none", "bm25"):
            store = work / f"store-{sparse}-{r}"
            t = time.perf_counter()
            s = ingest_paths([corpus], store=StoreTarget(store), encoder=encoder, model=model,
                             options=IngestOptions(sparse=sparse))
            rate = s.chunks_written / (time.perf_counter() - t)
            rates[sparse] = max(rates.get(sparse, 0.0), rate)
            print(f"ingest --sparse {sparse} (run {r + 1}): {s.chunks_written} chunks, {rate:.1f} chunks/s "
                  f"(embedding {s.embed_seconds:.1f}s of {s.seconds:.1f}s)")
    print(f"ingest chunks/s, best of {repeats}: none {rates['none']:.1f}, bm25 {rates['bm25']:.1f}, "
          f"ratio {rates['bm25'] / rates['none']:.3f}")
    with open_client(str(work / "store-none-0")) as client:
        points, texts, offset = None, [], None
        while True:
            points, offset = client.scroll("documents", limit=4096, offset=offset, with_payload=["_node_content"])
            texts += [json.loads(p.payload["_node_content"])["text"] for p in points]
            if offset is None:
                break
    t = time.perf_counter()
    document_vectors(texts)
    seconds = time.perf_counter() - t
    print(f"BM25 alone on the same {len(texts)} chunk texts: {len(texts) / seconds:,.0f} chunks/s "
          f"({1000 * seconds / len(texts):.3f} ms a chunk)")


def query_speed(data: Path, encoder, model: str, store: Path, batch_size: int) -> None:
    from sgpt_qdrant.ingest.client import open_client
    from sgpt_qdrant.ingest.retrieval_eval import evaluate_beir, load_beir
    from sgpt_qdrant.ingest.search import search, search_batch

    report = evaluate_beir(data, store=store, encoder=encoder, model=model, batch_size=batch_size)
    queries = load_beir(data).queries
    print(f"{report.documents} documents, {report.queries} queries, {report.chunks_written} chunks ingested")
    sample = list(queries.values())[:500]
    with open_client(str(store / "qdrant")) as client:
        for mode, result in report.modes.items():
            t = time.perf_counter()
            for start in range(0, len(sample), batch_size):
                search_batch(client, "corpus", sample[start:start + batch_size], encoder=encoder, mode=mode,
                             limit=300, with_payload=["doc_id"])
            batched = len(sample) / (time.perf_counter() - t)
            t = time.perf_counter()
            for text in sample:
                search(client, "corpus", text, encoder=encoder, mode=mode, limit=300, with_payload=["doc_id"])
            single = len(sample) / (time.perf_counter() - t)
            m = result.metrics
            print(f"{mode:>6}: evaluation {result.queries_per_second:7.1f} queries/s (all {result.queries}, with "
                  f"ranking and metrics); the first {len(sample)}: {batched:7.1f}/s in batches of {batch_size}, "
                  f"{single:7.1f}/s one by one, {batched / single:.2f}x; ndcg@10 {m['ndcg@10']:.4f} "
                  f"recall@100 {m['recall@100']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="a BEIR folder (default: generated)")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: a random tiny stand-in)")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--skip-ingest-cost", action="store_true")
    args = ap.parse_args()

    from sgpt_qdrant import Encoder
    from sgpt_qdrant.testing import write_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or str(write_random_checkpoint(work / "tiny"))
        encoder = Encoder(model, device="cpu")
        data = args.data or generate(work / "beir", args.docs, args.queries)
        if not args.skip_ingest_cost:
            ingest_cost(data, encoder, model, work / "cost")
        query_speed(data, encoder, model, work / "eval", args.batch_size)


if __name__ == "__main__":
    main()
