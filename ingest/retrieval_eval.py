"""Retrieval quality on a BEIR-layout folder, measured through the real store and the real query path.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, with a header). The
evaluation:

1. writes each corpus document as one text file (title, blank line, text) into
   ``<store>/corpus/`` — only files that are missing or differ, so a second run writes nothing —
   and ingests that folder with :func:`ingest.pipeline.ingest_paths` (the chunker, the model, the
   incremental rules of ``sgpt-ingest``, dense + BM25 vectors) into ``<store>/qdrant`` (or a
   server): a second run re-embeds nothing, a killed run is finished by the next;
2. runs every judged query through :func:`ingest.search.search_batch` (batched, one
   ``query_batch_points`` per batch) per mode: dense, sparse, hybrid (RRF in Qdrant);
3. turns chunk hits into document rankings (a document scores as its best chunk, BEIR's MaxP)
   and scores them with :mod:`ingest.retrieval_metrics` (nDCG@10, MAP@100, recall@100, MRR@10).

A document's file name is its ``_id`` percent-encoded (``/`` and other unsafe characters), so
the stored ``doc_id`` maps back to the BEIR id exactly.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

from . import retrieval_metrics
from .client import StoreTarget
from .search import MODES, search_batch

#: Chunks fetched per query: documents have several chunks, and recall@100 needs 100 documents.
DEFAULT_CHUNK_DEPTH = 300
COLLECTION = "corpus"


class EvalDataError(ValueError):
    """A BEIR folder that cannot be read: names the file and the line."""


@dataclass
class BeirData:
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> Iterator[dict]:
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise EvalDataError(f"{path}:{n}: not JSON ({exc.msg})") from None
                    if not isinstance(row, dict) or "_id" not in row:
                        raise EvalDataError(f"{path}:{n}: a JSON object with an '_id' expected")
                    yield row
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such file (a BEIR folder has corpus.jsonl, queries.jsonl, "
                            "qrels/<split>.tsv)") from None
    except UnicodeDecodeError as exc:
        raise EvalDataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def load_beir(folder: str | os.PathLike[str], split: str = "test") -> BeirData:
    """The corpus, the queries judged in ``qrels/<split>.tsv``, and those judgements."""
    folder = Path(folder)
    corpus = {str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or ""))
              for r in _jsonl(folder / "corpus.jsonl")}
    queries = {str(r["_id"]): str(r.get("text") or "") for r in _jsonl(folder / "queries.jsonl")}
    path = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t")
            for n, row in enumerate(rows, 1):
                if n == 1 and row and not row[-1].lstrip("-").isdigit():
                    continue  # the header: query-id corpus-id score
                if not row:
                    continue
                if len(row) != 3:
                    raise EvalDataError(f"{path}:{n}: query-id, corpus-id, score expected, got {len(row)} fields")
                try:
                    qrels.setdefault(row[0], {})[row[1]] = int(row[2])
                except ValueError:
                    raise EvalDataError(f"{path}:{n}: score {row[2]!r} is not an integer") from None
    except FileNotFoundError:
        raise EvalDataError(f"{path}: no such file (splits are qrels/<split>.tsv; --split)") from None
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise EvalDataError(f"{path}: {len(missing)} judged queries are not in queries.jsonl (first: {missing[0]!r})")
    return BeirData(corpus, {q: queries[q] for q in qrels}, qrels)


def file_name(doc_id: str) -> str:
    """The corpus file of a BEIR id: percent-encoded, so any id is one safe file name."""
    return quote(doc_id, safe="") + ".txt"


def doc_id_of(stored: str) -> str:
    """The BEIR id of a stored document id ``<source>/<file name>`` (file names hold no ``/``)."""
    name = stored.rsplit("/", 1)[-1]
    return unquote(name[:-4] if name.endswith(".txt") else name)


def write_corpus(data: BeirData, folder: Path) -> int:
    """One file per document (title, blank line, text); rewrites only what differs and removes
    files of documents no longer in the corpus. Returns files written.

    Each file is written to a temporary name and renamed, so a killed run leaves whole files."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = {file_name(d) for d in data.corpus}
    for path in folder.iterdir():
        if path.name not in keep and path.is_file():
            path.unlink()
    written = 0
    for doc_id, (title, text) in data.corpus.items():
        body = f"{title}\n\n{text}\n" if title else f"{text}\n"
        path = folder / file_name(doc_id)
        try:
            if path.read_text(encoding="utf-8") == body:
                continue
        except FileNotFoundError:
            pass
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
        written += 1
    return written


def documents_of(hits: Sequence, depth: int = 100) -> dict[str, float]:
    """Chunk hits (best first) → up to ``depth`` documents, each at its best chunk's place.

    The scores are the rank order (depth, depth − 1, …): fused scores tie, and the metrics must
    rank as Qdrant ranked, not by trec_eval's tie rule."""
    docs: dict[str, float] = {}
    for hit in hits:
        doc = doc_id_of(str((hit.payload or {}).get("doc_id", "")))
        if doc not in docs:
            docs[doc] = float(depth - len(docs))
            if len(docs) == depth:
                break
    return docs


@dataclass
class ModeResult:
    metrics: dict[str, float]
    queries: int
    seconds: float
    #: query id -> {doc id: score}: what the metrics were computed from (not in to_dict)
    run: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    @property
    def queries_per_second(self) -> float:
        return self.queries / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EvalReport:
    data: str
    split: str
    first_chunk: bool
    documents: int
    queries: int
    chunks_written: int
    ingest_seconds: float
    modes: dict[str, ModeResult] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "modes"}
        out["modes"] = {mode: {"metrics": r.metrics, "queries": r.queries, "seconds": r.seconds,
                               "queries_per_second": r.queries_per_second} for mode, r in self.modes.items()}
        return out


def first_chunks():
    """Only each document's first chunk: a document cut at the model's max_seq_length, as the
    paper's BEIR runs embedded it (sentence-transformers truncates)."""
    from qdrant_client import models

    from .schema import INDEX_FIELD

    return models.Filter(must=[models.FieldCondition(key=INDEX_FIELD, match=models.MatchValue(value=0))])


def run_queries(client, collection: str, queries: dict[str, str], *, encoder, mode: str, batch_size: int = 64,
                chunk_depth: int = DEFAULT_CHUNK_DEPTH, query_filter=None,
                on_batch: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """query id → {BEIR doc id: score}, the queries sent ``batch_size`` at a time."""
    ids = list(queries)
    run: dict[str, dict[str, float]] = {}
    for start in range(0, len(ids), batch_size):
        part = ids[start:start + batch_size]
        results = search_batch(client, collection, [queries[q] for q in part], encoder=encoder, mode=mode,
                               limit=chunk_depth, query_filter=query_filter, with_payload=["doc_id"])
        for qid, hits in zip(part, results):
            run[qid] = documents_of(hits)
        if on_batch is not None:
            on_batch(min(start + batch_size, len(ids)), len(ids))
    return run


def evaluate_beir(
    data: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str],
    encoder,
    model: str | None = None,
    server: StoreTarget | None = None,
    collection: str = COLLECTION,
    split: str = "test",
    modes: Sequence[str] = MODES,
    batch_size: int = 64,
    chunk_depth: int = DEFAULT_CHUNK_DEPTH,
    max_queries: int | None = None,
    first_chunk: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> EvalReport:
    """Ingest the corpus of ``data`` into ``store`` (re-used by the next run) and score every mode.

    The vectors go to the embedded store in ``store/qdrant``, or to ``server`` (a
    :class:`ingest.client.StoreTarget` with a URL).

    ``first_chunk``: rank documents by their first chunk alone (:func:`first_chunks`) instead of
    their best chunk. ``on_progress(phase, done, total)``: phase "ingest" (documents) or a mode (queries)."""
    from .pipeline import IngestOptions, ingest_paths

    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    beir = load_beir(data, split)
    if max_queries is not None:
        beir.queries = dict(list(beir.queries.items())[:max_queries])
        beir.qrels = {q: beir.qrels[q] for q in beir.queries}
    store = Path(store)
    corpus_dir = store / "corpus"
    write_corpus(beir, corpus_dir)
    progress = on_progress or (lambda phase, done, total: None)
    t = time.perf_counter()
    target = server or StoreTarget(path=store / "qdrant")
    summary = ingest_paths([corpus_dir], store=target, collection=collection, encoder=encoder, model=model,
                           options=IngestOptions(sparse="bm25", prune=True),
                           on_progress=lambda s: progress("ingest", s.files_seen, s.files_total),
                           on_message=on_message)
    report = EvalReport(str(data), split, first_chunk, len(beir.corpus), len(beir.queries), summary.chunks_written,
                        time.perf_counter() - t)
    if summary.failed:
        raise EvalDataError(f"{summary.failed} corpus documents could not be ingested: {summary.failures[0]}")
    with target.open() as client:
        for mode in modes:
            t = time.perf_counter()
            run = run_queries(client, collection, beir.queries, encoder=encoder, mode=mode, batch_size=batch_size,
                              chunk_depth=chunk_depth, query_filter=first_chunks() if first_chunk else None,
                              on_batch=lambda done, total, m=mode: progress(m, done, total))
            seconds = time.perf_counter() - t
            report.modes[mode] = ModeResult(retrieval_metrics.evaluate(beir.qrels, run), len(beir.queries), seconds,
                                            run)
    return report
