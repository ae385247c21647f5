"""The plan and its execution: documents against what the store holds, in a kill-safe order.

Per document the stored state says one of: complete at this version (unchanged: nothing is read
into the model), or anything else (new, changed, or left half-written by a killed run). For the
latter the order of writes is

1. upsert every new chunk (deterministic ids: the same position overwrites the same point),
2. delete the document's points of any other version (old text, or positions past the new end).

A kill between or inside those steps leaves a state that is not "complete at this version", so
the next run redoes the document and ends where an uninterrupted run would have. Deletes of
files that are gone (``prune``) only remove whole documents, which is idempotent too.

Reading and chunking run on a producer thread ahead of the model; the main thread embeds in
batches of ``batch_size`` chunks (the encoder packs them by its token budget) and writes.
"""

from __future__ import annotations

import hashlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from . import store
from .chunk import Chunk, chunk_text
from .read import Document, Skipped, SourceFile, read_document

#: Test hook: seconds to sleep after each write batch (and a line on stderr), so a test can kill
#: the process at a known point.
PAUSE_ENV = "SGPT_INGEST_TEST_PAUSE"


def version_of(content_hash: str, model: str, max_tokens: int, overlap: int) -> str:
    """What a document's points were made from: change any part and they are rebuilt."""
    key = f"{content_hash}\0{model}\0{max_tokens}\0{overlap}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Writer(Protocol):
    """Where points go: :class:`ingest.upload.Uploader` (pipelined, retrying) or a test double.

    Deletes are only of points this run does not write (other versions, pruned documents), so a
    writer may reorder them against upserts."""

    def upsert(self, points: list) -> None: ...

    def delete(self, selector) -> None: ...

    def close(self) -> None: ...


@dataclass
class Summary:
    files_seen: int = 0
    ingested: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    documents_deleted: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    dry_run: bool = False
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prepared:
    doc: Document
    chunks: list[Chunk]
    version: str


@dataclass
class _Event:
    kind: str  # doc | unchanged | skipped | failed | warning
    doc: Prepared | None = None
    message: str = ""


class _Producer(threading.Thread):
    """Reads, hashes and chunks files into a bounded queue; the model never waits for disk."""

    def __init__(self, files: Iterable[SourceFile], state: dict[str, store.DocState], tokenizer, max_tokens: int,
                 overlap: int, model: str, maxsize: int = 64) -> None:
        super().__init__(name="sgpt-ingest-read", daemon=True)
        self.files, self.state = files, state
        self.tokenizer, self.max_tokens, self.overlap, self.model = tokenizer, max_tokens, overlap, model
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.stop = threading.Event()
        self.seen: set[str] = set()

    def _put(self, event: _Event | None) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(event, timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            for source in self.files:
                if self.stop.is_set():
                    return
                self._put(self._one(source))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_Event("error", message=f"{exc}"))
        finally:
            self._put(None)

    def _one(self, source: SourceFile) -> _Event:
        if source.doc_id in self.seen:
            return _Event("failed", message=f"{source.path}: document id {source.doc_id!r} already given by "
                                            "another input; ingest the folders into separate collections")
        self.seen.add(source.doc_id)
        try:
            doc = read_document(source)
        except Skipped as exc:
            self.seen.discard(source.doc_id)
            return _Event("skipped", message=str(exc))
        except (OSError, ValueError) as exc:
            return _Event("failed", message=f"{source.path}: {getattr(exc, 'strerror', None) or exc}")
        version = version_of(doc.content_hash, self.model, self.max_tokens, self.overlap)
        stored = self.state.get(doc.doc_id)
        if stored is not None and stored.complete(version):
            return _Event("unchanged", message="\n".join(doc.warnings))
        try:
            chunks = chunk_text(doc.text, self.tokenizer, self.max_tokens, self.overlap)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            return _Event("failed", message=f"{source.path}: cannot chunk: {exc}")
        if not chunks and stored is None:
            return _Event("skipped", message=f"{source.path}: no text")  # and nothing stored
        return _Event("doc", Prepared(doc, chunks, version), "\n".join(doc.warnings))


def sync(
    files: Iterable[SourceFile],
    state: dict[str, store.DocState],
    *,
    tokenizer,
    max_tokens: int,
    model: str,
    overlap: int = 0,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    writer: Writer | None = None,
    batch_size: int = 256,
    prune: bool = False,
    dry_run: bool = False,
    on_progress: Callable[[Summary], None] | None = None,
    on_message: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> Summary:
    """Bring the store in line with ``files``. ``dry_run`` counts what would change, writes nothing."""
    if not dry_run and (encode is None or writer is None):
        raise ValueError("encode and writer are needed unless dry_run")
    summary = Summary(dry_run=dry_run)
    start = time.perf_counter()
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    producer = _Producer(files, state, tokenizer, max_tokens, overlap, model)
    pending: list[tuple[Prepared, Chunk]] = []
    batches = 0

    def done_doc(p: Prepared) -> None:
        stored = state.get(p.doc.doc_id)
        if stored is not None:
            # old points at positions past the new end (exact when the old version was complete)
            summary.chunks_deleted += max(0, stored.points - len(p.chunks))
        if not dry_run:
            writer.delete(store.stale_filter(p.doc.doc_id, p.version) if p.chunks
                          else store.docs_filter([p.doc.doc_id]))
        summary.ingested += 1

    def flush(n: int) -> None:
        nonlocal batches
        take, pending[:] = pending[:n], pending[n:]
        if not take:
            return
        t = time.perf_counter()
        vectors = encode([c.text for _, c in take])
        summary.embed_seconds += time.perf_counter() - t
        points = []
        finished = []
        i = 0
        while i < len(take):
            p = take[i][0]
            j = i
            while j < len(take) and take[j][0] is p:
                j += 1
            group = [c for _, c in take[i:j]]
            points += store.make_points(p.doc.doc_id, str(p.doc.path.absolute()), group, vectors[i:j],
                                        chunk_count=len(p.chunks), content_hash=p.doc.content_hash,
                                        version=p.version, model=model)
            if group[-1].index == len(p.chunks) - 1:
                finished.append(p)
            i = j
        writer.upsert(points)
        summary.chunks_written += len(points)
        for p in finished:
            done_doc(p)
        batches += 1
        if pause:
            print(f"sgpt-ingest: test pause after batch {batches}", file=sys.stderr, flush=True)
            time.sleep(pause)

    producer.start()
    try:
        while True:
            event = producer.queue.get()
            if event is None:
                break
            if event.message and event.kind in {"doc", "unchanged"}:
                for line in event.message.splitlines():
                    summary.warnings.append(line)
                    on_message(f"warning: {line}")
            if event.kind == "error":
                raise RuntimeError(event.message)
            summary.files_seen += 1
            if event.kind == "skipped":
                summary.skipped += 1
                on_message(f"skipped: {event.message}")
            elif event.kind == "failed":
                summary.failed += 1
                summary.failures.append(event.message)
                on_message(f"error: {event.message}")
            elif event.kind == "unchanged":
                summary.unchanged += 1
            elif event.kind == "doc":
                p = event.doc
                if dry_run or not p.chunks:
                    if dry_run:
                        summary.chunks_written += len(p.chunks)
                    done_doc(p)
                else:
                    pending.extend((p, c) for c in p.chunks)
                    while len(pending) >= batch_size:
                        flush(batch_size)
            if on_progress is not None:
                on_progress(summary)
        while pending:
            flush(batch_size)
        if prune:
            gone = sorted(set(state) - producer.seen)
            for doc_id in gone:
                summary.chunks_deleted += state[doc_id].points
            summary.documents_deleted = len(gone)
            if gone and not dry_run:
                for k in range(0, len(gone), 256):
                    writer.delete(store.docs_filter(gone[k:k + 256]))
        if not dry_run:
            writer.close()
    finally:
        producer.stop.set()
        summary.seconds = time.perf_counter() - start
    if on_progress is not None:
        on_progress(summary)
    return summary
