"""Ingest cost through the library pipeline (``ingest_paths``, what ``sgpt-ingest`` runs).

The corpus is generated Markdown of varied sizes (log-normal, from a few lines to ~2,000 lines:
headings, prose paragraphs, bullet lists, code blocks), seeded, so runs compare. Parts:

``scale``     tiny random model, embedded store: seconds per chunk on the corpus and on two
              copies of the same tree (twice the chunks). Linear cost means a ratio near 1
              (target <= 1.25).
``no-model``  the encoder replaced by a no-op (constant vectors): chunks/s of everything
              outside the model, into the embedded store and into the stand-in Qdrant REST
              server of the tests (sgpt_qdrant/testing/standin.py, on 127.0.0.1).
``small``     many small files (default 20,000 of one or two paragraphs), tiny model,
              embedded store: a first load and an unchanged re-run.
``peer``      real documentation (the README/METADATA and .md/.rst files of this venv's packages,
              copied), tiny model: ``ingest_paths`` into the embedded store (Qdrant Edge) against the
              pipeline a LlamaIndex user writes, ``IngestionPipeline(SGPTNodeParser, SGPTEmbedding)``
              into ``QdrantVectorStore`` on qdrant-client's local mode, in one run; chunks/s and ratio.
``size``      the installed ``sgpt-ingest`` on 1 and N copies of the real-docs tree (tiny model,
              embedded store): chunks/s, peak RSS, unchanged re-run ms per stored chunk, and a cold
              ``examples/query_qdrant.py`` process, at both sizes and as ratios (issue 16's bars:
              ~8k and ~100k chunks: ``--size-bytes 2500000 --size-copies 1,12``).
``rerun``     the installed ``sgpt-ingest`` command with a 125M-shape random model: wall time
              and peak RSS of an unchanged re-run and of ``--dry-run`` (neither loads the model),
              against the first run that does.

    python benchmarks/ingest_throughput.py --parts scale,no-model,small,rerun --files 150
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sgpt_qdrant.ingest.client import StoreTarget

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("river bridge stone water morning light garden letter window harbour market winter summer "
         "train station road field forest mountain village city council meeting bread lamp tower ship "
         "sailor keeper storm wind cloud rain season history map archive museum school teacher student "
         "book paper report engine wheel tool worker farmer baker painter colour music song dance").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 22))]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


def markdown(rng: random.Random, blocks: int) -> str:
    out = [f"# {sentence(rng)[:-1]}"]
    for b in range(blocks):
        kind = rng.random()
        if b % 7 == 6:
            out.append(f"## {sentence(rng)[:-1]}")
        elif kind < 0.6:
            out.append(" ".join(sentence(rng) for _ in range(rng.randint(1, 8))))
        elif kind < 0.85:
            out.append("\n".join(f"- {sentence(rng)}" for _ in range(rng.randint(2, 6))))
        else:
            out.append("```python\n" + "\n".join(f"{rng.choice(WORDS)}_{i} = {rng.randint(0, 999)}"
                                                 for i in range(rng.randint(2, 10))) + "\n```")
    return "\n\n".join(out) + "\n"


def write_corpus(root: Path, files: int, seed: int = 0, mean_blocks: float = 25.0, sigma: float = 1.2) -> None:
    """``files`` Markdown files in a few sub-folders, block counts log-normal around ``mean_blocks``."""
    rng = random.Random(seed)
    mu = math.log(mean_blocks) - sigma * sigma / 2
    for i in range(files):
        folder = root / f"part{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        blocks = max(1, min(2000, int(rng.lognormvariate(mu, sigma))))
        (folder / f"doc{i:05d}.md").write_text(markdown(rng, blocks))


class NoOpEncoder:
    """Constant unit vectors at no cost: what is left is everything outside the model."""

    def __init__(self, dimension: int, tokenizer, max_length: int) -> None:
        self.dimension, self.tokenizer, self.max_length = dimension, tokenizer, max_length
        self.model_name = "no-op"
        self._row = np.full(dimension, 1 / math.sqrt(dimension), dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.broadcast_to(self._row, (len(texts), self.dimension))


def ingest(paths, **kwargs):
    from sgpt_qdrant.ingest import IngestOptions, ingest_paths

    options = IngestOptions(batch_size=kwargs.pop("batch_size", 256))
    t = time.perf_counter()
    summary = ingest_paths(paths, options=options, **kwargs)
    return summary, time.perf_counter() - t


def part_scale(tmp: Path, model_dir: Path, files: int) -> None:
    single = tmp / "single"
    write_corpus(single / "docs", files)
    double = tmp / "double"
    shutil.copytree(single / "docs", double / "docs" / "a")
    shutil.copytree(single / "docs", double / "docs" / "b")
    results = {}
    for name, docs in (("single", [single / "docs"]), ("double", [double / "docs"])):
        s, wall = ingest(docs, model=model_dir, store=StoreTarget(tmp / f"q-{name}"))
        work = wall - s.model_load_seconds  # the model loads once per run, whatever the corpus
        results[name] = work / s.chunks_written
        print(f"scale {name}: {s.files_seen} files, {s.chunks_written} chunks in {work:.1f}s after the model "
              f"loaded ({1000 * results[name]:.2f} ms/chunk; encoder {s.embed_seconds:.1f}s)", flush=True)
    print(f"scale: seconds per chunk, double / single = {results['double'] / results['single']:.3f} "
          "(target <= 1.25)", flush=True)


def part_no_model(tmp: Path, model_dir: Path, files: int) -> None:
    from sgpt_qdrant import checkpoint as ckpt

    from sgpt_qdrant.testing.standin import StandIn  # the tests' stand-in Qdrant REST server

    docs = tmp / "nm-docs"
    write_corpus(docs, files, seed=1)
    root, dim, max_len = ckpt.peek(model_dir)
    encoder = NoOpEncoder(dim, ckpt.load_tokenizer(root)[0], max_len)
    s, wall = ingest([docs], encoder=encoder, store=StoreTarget(tmp / "q-nm"))
    print(f"no-model, embedded store: {s.chunks_written} chunks in {wall:.1f}s = {s.chunks_written / wall:.0f} chunks/s",
          flush=True)
    server = StandIn().start()
    try:
        s, wall = ingest([docs], encoder=encoder, store=StoreTarget(url=server.url))
    finally:
        server.stop()
    print(f"no-model, stand-in server: {s.chunks_written} chunks in {wall:.1f}s = "
          f"{s.chunks_written / wall:.0f} chunks/s", flush=True)


def part_small(tmp: Path, model_dir: Path, count: int) -> None:
    """First loads of count/10 and count small files: linear cost means the same seconds per file."""
    rng = random.Random(2)
    per_file = {}
    for n in (count // 10, count):
        docs = tmp / f"small-{n}"
        for i in range(n):
            folder = docs / f"d{i // 1000:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"n{i:05d}.md").write_text(f"# Note {i}\n\n" + " ".join(sentence(rng)
                                                                         for _ in range(rng.randint(1, 5))))
        for label in ("first load", "unchanged re-run"):
            s, wall = ingest([docs], model=model_dir, store=StoreTarget(tmp / f"q-small-{n}"))
            work = wall - s.model_load_seconds
            if label == "first load":
                per_file[n] = work / n
            print(f"small files, {label}: {s.files_seen} files, {s.chunks_written} chunks written, "
                  f"{s.unchanged} unchanged in {work:.1f}s (+ model load {s.model_load_seconds:.1f}s)", flush=True)
    print(f"small files: seconds per file, {count} / {count // 10} files = "
          f"{per_file[count] / per_file[count // 10]:.3f} (linear: about 1)", flush=True)


#: Peak anonymous memory of the last :func:`_timed_command` child in MB (sampled every 0.2 s): the
#: part of its RSS that is not the store's own files mapped from the page cache.
LAST_PEAK_ANON_MB = 0.0


def _timed_command(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB of the child, exit status) of the installed sgpt-ingest; its peak
    anonymous memory (RssAnon) goes to :data:`LAST_PEAK_ANON_MB`."""
    global LAST_PEAK_ANON_MB
    binary = Path(sys.executable).parent / "sgpt-ingest"
    code = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
            "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); anon = 0\n"
            "while p.poll() is None:\n"
            "    try:\n"
            "        anon = max([anon] + [int(l.split()[1]) for l in open(f'/proc/{p.pid}/status') if l.startswith('RssAnon')])\n"
            "    except OSError:\n"
            "        pass\n"
            "    time.sleep(0.2)\n"
            "print(json.dumps([time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode, anon / 1024]))")
    out = subprocess.run([sys.executable, "-c", code, str(binary), *args], capture_output=True, text=True, check=True)
    import json

    wall, rss, rc, LAST_PEAK_ANON_MB = json.loads(out.stdout)
    return wall, rss, rc


def part_rerun(tmp: Path, files: int) -> None:
    from sgpt_qdrant.testing import SHAPE_125M, write_random_checkpoint

    model = write_random_checkpoint(tmp / "model-125m", shape=SHAPE_125M)
    docs = tmp / "rr-docs"
    write_corpus(docs, files, seed=3, mean_blocks=6)
    base = [str(docs), "--model", str(model), "--qdrant-path", str(tmp / "q-rr"), "--quiet"]
    for label, extra in (("first run (loads the 125M-shape model)", []), ("unchanged re-run", []),
                         ("--dry-run", ["--dry-run"])):
        wall, rss, rc = _timed_command(base + extra)
        print(f"command, {label}: {wall:.1f}s, peak RSS {rss:.0f} MB, exit {rc}", flush=True)


def docs_corpus(root: Path, limit_bytes: int) -> int:
    """Copies of the venv's package documentation (METADATA long descriptions, .md, .rst): real docs."""
    import qdrant_client

    root.mkdir(parents=True)
    total = 0
    site_packages = Path(qdrant_client.__file__).resolve().parents[1]  # where the packages really are
    sources = sorted(site_packages.glob("*.dist-info/METADATA")) + sorted(
        p for ext in ("md", "rst") for p in site_packages.rglob(f"*.{ext}"))
    for i, src in enumerate(sources):
        if total >= limit_bytes:
            break
        try:
            text = src.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        name = src.parent.name if src.name == "METADATA" else src.stem
        (root / f"{i:04d}-{name}{'.md' if src.suffix != '.rst' else '.rst'}").write_text(text, encoding="utf-8")
        total += len(text.encode())
    return total


def _peer_side(side: str, label: str, corpus: Path, store: Path, model_dir: Path) -> None:
    """One side of the peer comparison in this (fresh) process: libraries imported first for both
    sides alike, then the run is timed from the model load to the last write. Prints JSON."""
    import json
    import warnings

    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from transformers import GPT2TokenizerFast, GPTNeoConfig  # noqa: F401 - the checkpoint's classes (transformers
    # imports them lazily, ~1 s): library imports, before the clock on both sides like the others
    import sgpt_qdrant.engine  # noqa: F401 - torch and the runtime, imported before the clock on both sides
    from sgpt_qdrant import SGPTEmbedding, SGPTNodeParser
    from sgpt_qdrant import checkpoint as ckpt
    from sgpt_qdrant.ingest import pipeline  # noqa: F401

    warnings.filterwarnings("ignore")
    root, dim, max_len = ckpt.peek(model_dir)
    row = [1 / math.sqrt(dim)] * dim
    noop = label == "no-op"

    class NoOpEmbedding(BaseEmbedding):  # the peer's counterpart of NoOpEncoder
        def _get_text_embedding(self, text):
            return row

        def _get_text_embeddings(self, texts):
            return [row] * len(texts)

        def _get_query_embedding(self, query):
            return row

        async def _aget_query_embedding(self, query):
            return row

    if side == "ours":
        encoder = NoOpEncoder(dim, ckpt.load_tokenizer(root)[0], max_len) if noop else None  # no-op: tokenizer untimed
        summary, seconds = ingest([corpus], store=StoreTarget(store), model=str(model_dir), encoder=encoder)
        chunks = summary.chunks_written
    else:
        parser = SGPTNodeParser(str(model_dir)) if noop else None  # no-op: tokenizer untimed, as for ours
        t = time.perf_counter()
        embed = NoOpEmbedding() if noop else SGPTEmbedding(model_name=str(model_dir), device="cpu")
        parser = parser or SGPTNodeParser.from_embedding(embed)
        documents = SimpleDirectoryReader(str(corpus), recursive=True).load_data()
        client = QdrantClient(path=str(store))  # a store this run writes itself (no foreign pickle)
        vector_store = QdrantVectorStore(client=client, collection_name="peer")
        chunks = len(IngestionPipeline(transformations=[parser, embed], vector_store=vector_store).run(
            documents=documents))
        seconds = time.perf_counter() - t
        client.close()
    print(json.dumps({"chunks": chunks, "seconds": seconds}))


def part_peer(tmp: Path, model_dir: Path, limit_bytes: int, with_model: bool = True, repeat: int = 1) -> None:
    """Both pipelines on the same real docs, each run in a fresh process as a user runs it (imports
    outside the clock on both sides): with the tiny model (model load included on both sides) and
    with a constant no-op encoder on both (the machinery alone). ``repeat`` alternates the sides
    (ours, peer, ours, ...), each into a fresh store; the fastest run of each side counts."""
    import json

    corpus = tmp / "peer-docs"
    size = docs_corpus(corpus, limit_bytes)
    for label in (["tiny model"] if with_model else []) + ["no-op encoder"]:
        tag = label.split()[0]
        runs: dict[str, list[tuple[int, float]]] = {"ours": [], "peer": []}
        for r in range(repeat):
            for side in ("ours", "peer"):
                out = subprocess.run([sys.executable, __file__, "--peer-side", side, "--peer-label", tag,
                                      "--peer-corpus", str(corpus), "--peer-store", str(tmp / f"peer-{side}-{tag}-{r}"),
                                      "--peer-model", str(model_dir)], capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"peer part, {side} side failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                runs[side].append((result["chunks"], result["seconds"]))
        (ours_n, ours_s), (peer_n, peer_s) = (min(runs[s], key=lambda x: x[1]) for s in ("ours", "peer"))
        ours_rate, peer_rate = ours_n / ours_s, peer_n / peer_s
        each = "" if repeat == 1 else "; runs: ours " + ", ".join(f"{x:.1f}" for _, x in runs["ours"]) + \
            " s, peer " + ", ".join(f"{x:.1f}" for _, x in runs["peer"]) + " s"
        print(f"peer ({label}): {len(list(corpus.iterdir()))} real doc files, {size / 1e6:.1f} MB; sgpt-ingest (Edge) "
              f"{ours_n} chunks in {ours_s:.1f}s = {ours_rate:.0f} chunks/s; LlamaIndex IngestionPipeline + "
              f"QdrantVectorStore (local mode) {peer_n} chunks in {peer_s:.1f}s = {peer_rate:.0f} chunks/s; "
              f"ratio {ours_rate / peer_rate:.2f}x (fresh process per run, fastest of {repeat}{each})", flush=True)


def part_size(tmp: Path, model_dir: Path, limit_bytes: int, copies: list[int], keep: bool = False) -> None:
    import shutil as _shutil

    from sgpt_qdrant.ingest.edge import EdgeClient

    base = tmp / "size-base"
    docs_corpus(base, limit_bytes)
    rows = []
    for n in copies:
        tree = tmp / f"size-{n}"
        for i in range(n):
            _shutil.copytree(base, tree / f"copy{i}")
        store = tmp / f"size-q{n}"
        args = [str(tree), "--model", str(model_dir), "--qdrant-path", str(store), "--quiet"]
        first, rss, rc = _timed_command(args)
        anon = LAST_PEAK_ANON_MB
        with EdgeClient(store) as client:
            chunks = client.count("documents").count
        rerun, rerun_rss, _ = _timed_command(args)
        t = time.perf_counter()
        query = subprocess.run([sys.executable, str(ROOT / "examples" / "query_qdrant.py"), "bees and flowers",
                                "--qdrant-path", str(store), "--model", str(model_dir)], capture_output=True)
        cold = time.perf_counter() - t
        rows.append((n, chunks, first, rss, rerun, cold))
        print(f"size: {n} copies, {chunks} chunks: first run {first:.1f}s = {chunks / first:.0f} chunks/s (exit {rc}), "
              f"peak RSS {rss:.0f} MB (anonymous {anon:.0f} MB); unchanged re-run {rerun:.1f}s = {rerun / chunks * 1000:.3f} ms/chunk "
              f"(RSS {rerun_rss:.0f} MB); cold query_qdrant.py {cold:.1f}s (exit {query.returncode})", flush=True)
        if not keep:
            _shutil.rmtree(tree)
    (n0, c0, f0, _, _, q0), (n1, c1, f1, _, _, q1) = rows[0], rows[-1]
    print(f"size: chunks/s at {c1} vs {c0} chunks: {(c1 / f1) / (c0 / f0):.2f}x (bar >= 0.8); "
          f"cold query {q1 / q0:.2f}x (bar <= 1.5)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="scale,no-model,small,rerun")
    ap.add_argument("--files", type=int, default=150, help="Markdown files of the scale / no-model corpus")
    ap.add_argument("--small-files", type=int, default=20000)
    ap.add_argument("--rerun-files", type=int, default=30)
    ap.add_argument("--peer-bytes", type=int, default=600_000, help="bytes of real docs for the peer part")
    ap.add_argument("--peer-no-model-only", action="store_true", help="peer part: only the no-op encoder run")
    ap.add_argument("--size-bytes", type=int, default=300_000, help="bytes of real docs per copy (size part)")
    ap.add_argument("--size-copies", default="1,4", help="copies of the docs tree to compare (size part)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--spinning-threads", action="store_true",
                    help="leave OpenMP's default wait policy (the commands set OMP_WAIT_POLICY=PASSIVE)")
    ap.add_argument("--work-dir", help="work in this folder and keep the trees and stores (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=1, help="peer part: runs per side, the fastest counts")
    for name in ("--peer-side", "--peer-label", "--peer-corpus", "--peer-store", "--peer-model"):
        ap.add_argument(name, help=argparse.SUPPRESS)  # one side of the peer part, in its own process
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.spinning_threads:  # as every sgpt-* command does, for both sides of each comparison
        from sgpt_qdrant.cli_util import sleeping_cpu_threads

        sleeping_cpu_threads()
    if args.peer_side:
        return _peer_side(args.peer_side, args.peer_label, Path(args.peer_corpus), Path(args.peer_store),
                          Path(args.peer_model))
    import torch

    from sgpt_qdrant.testing import write_random_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    t = time.perf_counter()
    import llama_index.core.vector_stores.utils  # noqa: F401 - once per process, not per chunk: timed apart
    print(f"cpu: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; LlamaIndex import "
          f"{time.perf_counter() - t:.1f}s (once per process, outside the figures below)", flush=True)
    with (contextlib.nullcontext(args.work_dir) if args.work_dir else tempfile.TemporaryDirectory()) as tmp:
        tmp = Path(tmp)
        tiny = write_random_checkpoint(tmp / "tiny")  # GPT-Neo 2 layers, hidden 32, real GPT-2 BPE
        if "scale" in parts:
            part_scale(tmp, tiny, args.files)
        if "no-model" in parts:
            part_no_model(tmp, tiny, args.files)
        if "small" in parts:
            part_small(tmp, tiny, args.small_files)
        if "peer" in parts:
            part_peer(tmp, tiny, args.peer_bytes, with_model=not args.peer_no_model_only, repeat=args.repeat)
        if "size" in parts:
            part_size(tmp, tiny, args.size_bytes, [int(c) for c in args.size_copies.split(",")], keep=bool(args.work_dir))
        if "rerun" in parts:
            part_rerun(tmp, args.rerun_files)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
