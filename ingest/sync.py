"""The plan and its execution: documents against what the store holds, in a kill-safe order.

Per document the stored state (:class:`ingest.store.DocState`, read once at the start) says one
of: complete at this version (unchanged: nothing is read into the model), or anything else (new,
changed, or left half-written by a killed run). For the latter the order of writes is

1. upsert every new chunk (deterministic ids: the same position overwrites the same point),
2. delete, by id, the document's stored points that step 1 did not overwrite (positions past
   the new end, strays of an interrupted run); a new document has none, so it costs no delete.

A kill between or inside those steps leaves a state that is not "complete at this version", so
the next run redoes the document and ends where an uninterrupted run would have. It redoes only
what is missing: a chunk whose point is stored at this version with the same chunk hash
(:meth:`DocState.holds`) is exactly what step 1 would write, so it is kept, not embedded again. Deletes of
files that are gone (``prune``) remove whole documents by their stored ids, idempotent too.

The steps are plain functions so that other executors (a Ray pipeline, a test) reuse them:
:func:`prepare` one file → :class:`Outcome`; :func:`points_for` a prepared document's chunks and
vectors; :func:`stale_ids` and :func:`prune_ids` for the deletes after the writes. :func:`sync`
runs them in-process: reading and chunking on a producer thread ahead of the model, the main
thread embedding in batches of ``batch_size`` chunks (the encoder packs them by token budget)
and writing.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from . import schema
from .chunk import CHUNKER_VERSION, Chunk, chunk_sections
from .read import Document, ReadOptions, Skipped, SourceFile, read_document
from .store import DocState

if TYPE_CHECKING:
    import numpy as np

CATEGORIES = ("new", "changed", "unchanged", "pruned")


def version_of(content_hash: str, model: str, max_tokens: int, overlap: int, reader: str = "",
               sparse: str = "none") -> str:
    """What a document's points were made from: change any part and they are rebuilt.

    ``model`` is the model's fingerprint (:func:`ingest.model_id.model_fingerprint`), so
    replaced weights at the same path re-embed; ``reader`` the library that extracted a PDF's
    or Office file's text (plain text has none). ``sparse`` (``--sparse``) is in the key as the
    BM25 encoder's settings; "none" leaves the key as it was before sparse vectors existed."""
    key = f"{content_hash}\0{model}\0{max_tokens}\0{overlap}\0chunker {CHUNKER_VERSION}"
    if reader:
        key += f"\0reader {reader}"
    if sparse != "none":
        from .sparse import BM25_VERSION, check_mode

        key += f"\0sparse {check_mode(sparse)} {BM25_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Writer(Protocol):
    """Where points go: :class:`ingest.upload.Uploader` (pipelined, retrying) or a test double.

    Deletes are only of points this run does not write (stale positions, pruned documents), so
    a writer may reorder them against upserts."""

    def upsert(self, points: list) -> None: ...

    def delete(self, selector) -> None: ...

    def close(self) -> None: ...


@dataclass
class Summary:
    """What a run did (or, dry, would do); also the progress snapshot handed to ``on_progress``."""

    files_seen: int = 0
    ingested: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_written: int = 0
    chunks_kept: int = 0  # stored whole by a stopped run at this version: not embedded again
    chunks_deleted: int = 0
    documents_deleted: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    model_load_seconds: float = 0.0
    dry_run: bool = False
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: dry runs: the document ids per category (new, changed, unchanged, pruned)
    documents: dict[str, list[str]] = field(default_factory=dict)
    # progress: files and bytes found, planned so far, chunks known so far
    files_total: int = 0
    bytes_total: int = 0
    bytes_planned: int = 0
    bytes_chunked: int = 0
    chunks_planned: int = 0

    def estimated_chunks(self) -> int:
        """Chunks this run will write: those known, plus the unread bytes at the rate seen so far."""
        if not self.bytes_chunked:
            return self.chunks_planned
        rest = max(0, self.bytes_total - self.bytes_planned) * self.chunks_planned / self.bytes_chunked
        return self.chunks_planned + int(rest)

    def to_dict(self) -> dict:
        """As JSON keys; a dry run's chunk counts are what it would do (``chunks_to_write`` ...)."""
        d = asdict(self)
        if self.dry_run:
            d["chunks_to_write"], d["chunks_to_delete"] = d.pop("chunks_written"), d.pop("chunks_deleted")
        return d


@dataclass
class Prepared:
    """A document to (re)write: its chunks, version and what the store held of it."""

    doc: Document
    chunks: list[Chunk]
    version: str
    stored: DocState | None = None
    #: indices of the chunks already stored as this run writes them (a resumed run): not embedded
    kept: set[int] = field(default_factory=set)

    @property
    def key(self) -> str:
        return schema.doc_key(self.doc.doc_id)

    @property
    def todo(self) -> list[Chunk]:
        """The chunks to embed and write."""
        return [c for c in self.chunks if c.index not in self.kept] if self.kept else self.chunks


@dataclass
class Outcome:
    """What :func:`prepare` made of one file. ``kind``: new, changed, unchanged, skipped, failed."""

    kind: str
    key: str
    prepared: Prepared | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    size: int = 0  # bytes of the file, for progress


def _size(source: SourceFile) -> int:
    try:
        return source.path.stat().st_size
    except OSError:
        return 0


def prepare(source: SourceFile, state: dict[str, DocState], *, tokenizer, max_tokens: int, overlap: int,
            model_id: str, read_options: ReadOptions = ReadOptions(), model: str | None = None,
            sparse: str = "none") -> Outcome:
    """Read, hash, version and (unless unchanged) chunk one file. Never raises for a bad file.

    ``model`` is the name stored in the payload; given, the chunks a stopped run already stored
    as this run would write them are marked kept (``Prepared.kept``). ``sparse``: see :func:`version_of`."""
    key = schema.doc_key(source.doc_id)
    where = schema.display(source.path)
    size = _size(source)
    try:
        doc = read_document(source, follow_links_outside=read_options.follow_links_outside,
                            max_bytes=read_options.max_bytes, defer_formats=True)
        version = version_of(doc.content_hash, model_id, max_tokens, overlap, doc.reader, sparse)
        stored = state.get(key)
        if stored is not None and stored.complete(version):
            return Outcome("unchanged", key, warnings=[schema.display(w) for w in doc.warnings], size=size)
        if doc.deferred is not None:  # a PDF or Office file: extracted only now that it is needed
            doc = doc.deferred()
    except Skipped as exc:
        return Outcome("skipped", key, message=schema.display(str(exc)), size=size)
    except (OSError, ValueError) as exc:
        return Outcome("failed", key, message=f"{where}: {getattr(exc, 'strerror', None) or exc}", size=size)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return Outcome("failed", key, message=f"{where}: cannot read: {type(exc).__name__}: {exc}", size=size)
    warnings = [schema.display(w) for w in doc.warnings]
    try:
        chunks = chunk_sections(doc.text, doc.sections, tokenizer, max_tokens, overlap)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        return Outcome("failed", key, message=f"{where}: cannot chunk: {exc}", warnings=warnings, size=size)
    if not chunks and stored is None:
        return Outcome("skipped", key, message=f"{where}: no text", warnings=warnings, size=size)
    kept = set()
    if stored is not None and stored.marks and model is not None:
        path = str(doc.path.absolute())
        kept = {c.index for c in chunks if stored.holds(schema.point_id(doc.doc_id, c.index), version,
                                                        schema.chunk_hash(c.text, path, model))}
    return Outcome("new" if stored is None else "changed", key, Prepared(doc, chunks, version, stored, kept),
                   warnings=warnings, size=size)


def points_for(prepared: Prepared, chunks: list[Chunk], vectors, *, model: str, sparse: str = "none") -> list:
    """Qdrant points for some of a prepared document's chunks and their vectors (same order)."""
    return schema.make_points(prepared.doc.doc_id, str(prepared.doc.path.absolute()), chunks, vectors,
                              chunk_count=len(prepared.chunks), content_hash=prepared.doc.content_hash,
                              version=prepared.version, model=model, sparse=sparse)


def stale_ids(prepared: Prepared) -> list[str]:
    """Stored ids of a rewritten document that its new chunks did not overwrite: delete them after
    the new chunks are written. Empty for a new document."""
    if prepared.stored is None:
        return []
    keep = {schema.point_id(prepared.doc.doc_id, c.index) for c in prepared.chunks}
    return prepared.stored.stale_ids(keep)


def prune_ids(state: dict[str, DocState], seen: set[str], covers: Callable[[str], bool]
              ) -> tuple[list[str], list[str]]:
    """(document ids, point ids) of the stored documents that are gone from disk: not among ``seen``
    (the keys of this run's inputs), under a folder this run walked whole (``covers``, e.g.
    :meth:`ingest.read.Discovery.covers`), and written by this ingest in this id layout (their
    points carry the source of their id). Another folder's documents, nodes a LlamaIndex app
    inserted and what could not be listed or read are never among them."""
    gone = sorted(key for key, doc in state.items()
                  if key not in seen and doc.sources == {schema.source_of(key)} and covers(key))
    return gone, [i for doc in gone for i in state[doc].ids]


class _Producer(threading.Thread):
    """Runs :func:`prepare` over the files into a bounded queue; the model never waits for disk."""

    def __init__(self, files: Iterable[SourceFile], state: dict[str, DocState], prepare_one: Callable,
                 maxsize: int = 64) -> None:
        super().__init__(name="sgpt-ingest-read", daemon=True)
        self.files, self.state, self.prepare_one = files, state, prepare_one
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.stop = threading.Event()
        self.seen: set[str] = set()

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
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
            self._put(exc)
        finally:
            self._put(None)

    def _one(self, source: SourceFile) -> Outcome:
        key = schema.doc_key(source.doc_id)
        if key in self.seen:
            return Outcome("failed", key, message=f"{schema.display(source.path)}: document id {key!r} already "
                           "given by another input; ingest the folders into separate collections",
                           size=_size(source))
        self.seen.add(key)
        outcome = self.prepare_one(source)
        if outcome.kind == "skipped":
            self.seen.discard(key)  # not a document (any more): --prune removes what was stored of it
        return outcome


def sync(
    files: Iterable[SourceFile],
    state: dict[str, DocState],
    *,
    tokenizer,
    max_tokens: int,
    model: str,
    model_id: str | None = None,
    overlap: int = 0,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    writer: Writer | None = None,
    batch_size: int = 256,
    prune: bool = False,
    prune_scope: Callable[[str], bool] | None = None,
    dry_run: bool = False,
    summary: Summary | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    on_message: Callable[[str], None] = lambda m: None,
    read_options: ReadOptions = ReadOptions(),
    sparse: str = "none",
) -> Summary:
    """Bring the store in line with ``files``; ``dry_run`` counts and lists what would change.

    ``prune`` removes the stored documents that are gone, among those ``prune_scope`` covers
    (:func:`prune_ids`; :meth:`ingest.read.Discovery.covers` of the walk that found ``files``).

    ``model`` is stored in the payload; ``model_id`` (default: ``model``) goes into the version.
    ``sparse``: "bm25" writes a BM25 sparse vector beside each dense one (:mod:`ingest.sparse`).
    ``encode`` is called only when something must be embedded (it may load the model then)."""
    if not dry_run and (encode is None or writer is None):
        raise ValueError("encode and writer are needed unless dry_run")
    if prune and prune_scope is None:
        raise ValueError("prune needs prune_scope: which stored documents this run's walk covered")
    summary = summary or Summary()
    summary.dry_run = dry_run
    if dry_run:
        summary.documents = {c: [] for c in CATEGORIES}
    start = time.perf_counter()
    model_id = model_id or model

    def prepare_one(source: SourceFile) -> Outcome:
        return prepare(source, state, tokenizer=tokenizer, max_tokens=max_tokens, overlap=overlap,
                       model_id=model_id, read_options=read_options, model=model, sparse=sparse)

    producer = _Producer(files, state, prepare_one)
    pending: list[tuple[Prepared, Chunk]] = []

    def done_doc(p: Prepared) -> None:
        ids = stale_ids(p)
        summary.chunks_deleted += len(ids)
        if ids and not dry_run:
            writer.delete(ids)
        summary.ingested += 1

    def flush(n: int) -> None:
        take, pending[:] = pending[:n], pending[n:]
        if not take:
            return
        t = time.perf_counter()
        vectors = encode([c.text for _, c in take])
        summary.embed_seconds += time.perf_counter() - t
        points, finished = [], []
        i = 0
        while i < len(take):
            p = take[i][0]
            j = i
            while j < len(take) and take[j][0] is p:
                j += 1
            group = [c for _, c in take[i:j]]
            points += points_for(p, group, vectors[i:j], model=model, sparse=sparse)
            if group[-1] is p.todo[-1]:
                finished.append(p)
            i = j
        writer.upsert(points)
        summary.chunks_written += len(points)
        for p in finished:
            done_doc(p)
        if on_progress is not None:
            on_progress(summary)

    producer.start()
    try:
        while True:
            item = producer.queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            outcome: Outcome = item
            for line in outcome.warnings:
                summary.warnings.append(line)
                on_message(f"warning: {line}")
            summary.files_seen += 1
            summary.bytes_planned += outcome.size
            if dry_run and outcome.kind in CATEGORIES:
                summary.documents[outcome.kind].append(outcome.key)
            if outcome.kind == "skipped":
                summary.skipped += 1
                on_message(f"skipped: {outcome.message}")
            elif outcome.kind == "failed":
                summary.failed += 1
                summary.failures.append(outcome.message)
                on_message(f"error: {outcome.message}")
            elif outcome.kind == "unchanged":
                summary.unchanged += 1
            else:
                p = outcome.prepared
                todo = p.todo
                setattr(summary, outcome.kind, getattr(summary, outcome.kind) + 1)
                summary.chunks_planned += len(todo)
                summary.chunks_kept += len(p.kept)
                summary.bytes_chunked += outcome.size
                if dry_run or not todo:
                    if dry_run:
                        summary.chunks_written += len(todo)
                    done_doc(p)
                else:
                    pending.extend((p, c) for c in todo)
                    while len(pending) >= batch_size:
                        flush(batch_size)
            if on_progress is not None:
                on_progress(summary)
        while pending:
            flush(batch_size)
        if prune:
            gone, ids = prune_ids(state, producer.seen, prune_scope)
            summary.chunks_deleted += len(ids)
            summary.documents_deleted = len(gone)
            if dry_run:
                summary.documents["pruned"] = gone
            elif ids:
                writer.delete(ids)
        if not dry_run:
            writer.close()
    finally:
        producer.stop.set()
        summary.seconds = time.perf_counter() - start
    if on_progress is not None:
        on_progress(summary)
    return summary
