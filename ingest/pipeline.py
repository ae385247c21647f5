"""The ingest pipeline as a Python function: paths → chunks → SGPT vectors → Qdrant, incremental.

:func:`ingest_paths` is what ``sgpt-ingest`` runs and what Python users call. It raises (never
prints or exits): :class:`IngestError` for a problem found before any work (bad option, model,
store, collection, server), :class:`ingest.upload.UploadError` when the server stays down
mid-run (what was written is consistent: run again), ``KeyboardInterrupt`` as is. A file that
cannot be read fails alone: it is counted and named in the returned :class:`Summary`.

Order of work, cheapest first, so that a run with nothing to embed never loads the model:
files discovered → model files resolved (a Hub id is downloaded once), its dimension and max length
read from JSON and its files fingerprinted (hashes cached), no weights loaded → store opened
(a locked folder is refused here) → collection checked → state read → files read, hashed and
planned → the encoder is built at the first chunk that must be embedded.

The building blocks of an executor: :func:`discover`, :func:`open_store_state`,
:class:`ingest.plan.ChunkSettings` (one file → an outcome and its chunks) and
:class:`ingest.run.Run` (the books, the duplicate-id rule, the deletes, the prune), which
:func:`ingest.sync.sync` and :func:`ingest.distributed.ray_sync` share.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgpt_qdrant.checkpoint import CheckpointError

from . import client as qc
from . import collection_config as cc
from . import schema
from .distributed import RayOptions, RaySetupError, ServerTarget, ray_sync
from .partition import Partition, owns, parse_partition
from . import rekey, verify
from .sparse import SPARSE_MODES, SparseError
from .sparse import resolve_mode as resolve_sparse
from .read import Discovery, ReadOptions, walk
from .plan import REWRITTEN, ChunkSettings, file_size
from .run import Run, Summary, Writer
from .store import DocState, read_state
from .sync import sync
from .upload import Uploader

__all__ = ["IngestError", "IngestOptions", "Summary", "discover", "ingest_paths", "open_store_state"]

log = logging.getLogger(__name__)

#: No token-count warning from transformers: the chunker tokenises whole paragraphs on purpose.
_NO_LENGTH_LIMIT = int(1e30)


class IngestError(RuntimeError):
    """A problem found before any work (option, model, store, collection, server): one line."""


@dataclass
class IngestOptions:
    """How to ingest; the command's options of the same names."""

    batch_size: int = 256  # chunks embedded and written per step
    chunk_overlap: int = 0  # tokens of the previous chunk repeated inside a paragraph
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    prune: bool = False  # remove stored documents under the folders given that are gone from disk
    source: str | None = None  # the ids' first part instead of each folder's own name (--source)
    dry_run: bool = False  # plan and list, write nothing, never load the model
    partition: str | Partition | None = None  # "K/N": this worker's share of the documents
    bulk_load: bool = False
    upsert_batch: int = 256
    in_flight: int = 4
    settings: cc.CollectionSettings = field(default_factory=cc.CollectionSettings)
    device: str | None = None
    dtype: str | None = None
    read: ReadOptions = field(default_factory=ReadOptions)  # symlinks out of the folder, size cap
    ray: RayOptions | None = None  # run on a Ray cluster (ingest.distributed); dry runs stay in-process
    #: "bm25" | "none" (ingest.sparse); None: bm25 for a new collection, else as the collection was made
    sparse: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "upsert_batch", "in_flight", "chunk_overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise IngestError(f"{name.replace('_', '-')} must be a whole number, got {value!r}")
        for name in ("batch_size", "upsert_batch", "in_flight"):
            if getattr(self, name) < 1:
                raise IngestError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.chunk_overlap < 0:
            raise IngestError(f"chunk-overlap must be at least 0, got {self.chunk_overlap}")
        if self.sparse is not None and self.sparse not in SPARSE_MODES:
            raise IngestError(f"sparse must be one of {', '.join(SPARSE_MODES)}, got {self.sparse!r}")


def discover(paths: Sequence[str | os.PathLike[str]], include: Sequence[str] = (), exclude: Sequence[str] = (),
             partition: Partition | None = None, source: str | None = None, skip_folder=None) -> Discovery:
    """Every input file of this worker (its ``partition`` share), sorted as found, and what the
    walk covered. Raises ValueError for a bad path list, FileNotFoundError for a missing path."""
    found = walk(paths, include, exclude, source, skip_folder)
    found.files = [f for f in found.files if owns(partition, schema.doc_key(f.doc_id))]
    return found


def open_store_state(client, collection: str, partition: Partition | None = None) -> dict[str, DocState]:
    """The stored state of this worker's documents (one scroll); server errors as :class:`IngestError`."""
    where = qc.client_url(client) if client is not None else "the embedded store"
    try:
        return read_state(client, collection, owns=lambda d: owns(partition, d))
    except qc.StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - first contact: name the server and what to do
        raise qc.setup_error(exc, where) from exc


@dataclass
class _Model:
    """What the plan needs of the model, without building it."""

    name: str  # stored in the payload
    model_id: str  # into ingest_version
    dimension: int
    max_tokens: int
    tokenizer: object
    load: Callable[[], object]  # builds the encoder

    def settings(self, options: IngestOptions) -> ChunkSettings:
        return ChunkSettings(self.tokenizer, self.max_tokens, self.name, self.model_id, options.chunk_overlap,
                             options.read, options.sparse)


def _model(model: str | os.PathLike[str] | None, encoder, options: IngestOptions) -> _Model:
    from sgpt_qdrant import checkpoint as ckpt

    from .model_id import model_fingerprint

    if encoder is not None:
        name = str(model or getattr(encoder, "model_name", type(encoder).__name__))
        folder = Path(name)
        try:
            model_id = model_fingerprint(folder) if folder.is_dir() else name
        except OSError as exc:
            raise IngestError(f"{folder}: cannot read the model files to fingerprint them ({exc})") from None
        tokenizer = copy.copy(encoder.tokenizer)
        tokenizer.model_max_length = _NO_LENGTH_LIMIT
        return _Model(name, model_id, int(encoder.dimension), int(encoder.max_length), tokenizer, lambda: encoder)
    name = ckpt.resolve_model_name(model)
    try:
        root, dim, max_len = ckpt.peek(name)
        tokenizer = ckpt.LazyTokenizer(root)  # loaded at the first file to chunk: none on an unchanged re-run
        model_id = model_fingerprint(root)
    except (ckpt.CheckpointError, OSError, ValueError) as exc:
        raise IngestError(str(exc)) from None
    tokenizer.model_max_length = _NO_LENGTH_LIMIT

    def load():
        from sgpt_qdrant.engine import Encoder

        # the tokenizer the chunker loaded, not a second parse of its files (the chunker counts on a
        # private copy of its core: sgpt_qdrant.chunk.Counter)
        return Encoder(ckpt.load(str(root), tokenizer=tokenizer), device=options.device, dtype=options.dtype)

    return _Model(name, model_id, dim, max_len, tokenizer, load)


class _LazyEncode:
    """The encoder's ``encode``, built at the first call: a run with nothing to embed never loads it.
    It reports its own times: the model's load, and embedding (what :func:`ingest.sync.sync` leaves
    to the encoder)."""

    takes_token_ids = True  # see ingest.sync.sync

    def __init__(self, model: _Model, summary: Summary, on_message: Callable[[str], None]) -> None:
        self.model, self.summary, self.on_message = model, summary, on_message
        self.encode = None
        self.encode_ids = None

    def __call__(self, texts: list[str], token_ids: list | None = None):
        if self.encode is None:
            import warnings

            self.on_message(f"loading the model {self.model.name} ...")
            t = time.perf_counter()
            with warnings.catch_warnings():  # a fallback is also logged: printed once, as a warning line
                warnings.filterwarnings("ignore", message="sgpt_qdrant: ", category=RuntimeWarning)
                encoder = self.model.load()
            if int(encoder.dimension) != self.model.dimension:
                raise IngestError(f"{self.model.name}: the model makes {encoder.dimension}-d vectors, its config "
                                  f"files say {self.model.dimension}")
            self.summary.model_load_seconds = time.perf_counter() - t
            device = getattr(encoder, "device", None)
            self.on_message(f"model loaded in {self.summary.model_load_seconds:.1f}s"
                            + (f" on {device}" if device is not None else ""))
            self.encode = encoder.encode
            # the chunker's ids are the encoder's own (one tokenizer, see _model) where it takes ids
            # and the chunks are within its length (else its tokenize would cut them: texts instead)
            if hasattr(encoder, "encode_ids") and getattr(encoder, "max_length", None):
                self.encode_ids, self.max_length = encoder.encode_ids, int(encoder.max_length)
        t = time.perf_counter()
        if token_ids is not None and self.encode_ids is not None and all(0 < len(x) <= self.max_length
                                                                         for x in token_ids):
            vectors = self.encode_ids(token_ids)
        else:
            vectors = self.encode(texts)
        self.summary.embed_seconds += time.perf_counter() - t
        return vectors


@contextlib.contextmanager
def _opened(store, create: bool) -> Iterator:
    """The client of ``store`` (a :class:`StoreTarget`, opened and closed here; or a client, left open)."""
    if not isinstance(store, qc.StoreTarget):
        yield store
        return
    with store.open(create=create) as opened:
        yield opened


def ingest_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    store: qc.StoreTarget | Any = None,
    model: str | os.PathLike[str] | None = None,
    encoder=None,
    collection: str = schema.DEFAULT_COLLECTION,
    options: IngestOptions | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    writer_hook: Callable[[Writer], Writer] | None = None,
) -> Summary:
    """Ingest files and folders into a Qdrant collection; returns what was done.

    ``store``: a :class:`ingest.client.StoreTarget` (the embedded store's folder, or a server's URL
    with key, gRPC, timeout), opened and closed here; or a client (a ``QdrantClient`` or
    :class:`ingest.edge.EdgeClient`), left open; default the embedded store in ``./qdrant_storage``.
    The model: ``encoder`` (an :class:`sgpt_qdrant.engine.Encoder`, or anything with ``encode``,
    ``dimension``, ``max_length``, ``tokenizer``; ``model`` then names it), or ``model``, a Hub id
    or folder, loaded only if something must be embedded. ``on_progress`` gets the running
    :class:`Summary` after each file and each written batch; ``on_message`` one-line notes
    (skipped and failed files, warnings, model loading). ``writer_hook`` wraps the writer (tests).
    """
    if options is not None and not isinstance(options, IngestOptions):
        raise IngestError(f"options must be an IngestOptions, got {type(options).__name__}")
    options = options or IngestOptions()
    store = qc.StoreTarget() if store is None else store
    target = store if isinstance(store, qc.StoreTarget) else None
    say = on_message or (lambda m: None)
    try:
        try:
            embedded = target.embedded if target is not None else qc.is_embedded(store)
            if embedded:
                _check_collection_name(collection)  # a folder name in the embedded store
            share = parse_partition(options.partition) if isinstance(options.partition, str) else options.partition
            found = discover(paths, options.include, options.exclude, share, options.source,
                             _store_folder(target))  # a mistyped path before any download
            files = found.files
            m = _model(model, encoder, options)
            if options.chunk_overlap >= m.max_tokens:
                raise IngestError(f"--chunk-overlap {options.chunk_overlap} must be below the model's "
                                  f"{m.max_tokens} tokens")
        except (ValueError, FileNotFoundError) as exc:
            raise IngestError(str(exc)) from None
        summary = Summary(files_total=len(files), bytes_total=sum(file_size(f) for f in files))
        for line in found.failures:  # folders that could not be listed: failures of this run
            summary.failed += 1
            summary.failures.append(schema.display(line))
            say(f"error: {schema.display(line)}")
        with _opened(store, create=not options.dry_run) as handle:
            where = qc.client_url(handle) if handle is not None else target.where()
            bulk, sparse = _prepare_collection(handle, collection, m.dimension, options, where)
            if options.sparse is None and sparse == "none":
                say(f"note: collection {collection!r} was made without BM25 vectors: writing dense vectors only "
                    "(sparse and hybrid search need a collection made with --sparse bm25)")
            options = dataclasses.replace(options, sparse=sparse)
            state = _state(handle, collection, found, share, options.dry_run, say)
            server = None if options.ray is None or target is None or embedded else ServerTarget(
                target, collection, options.upsert_batch, options.in_flight)  # Ray workers write there
            return _write(handle, collection, found, state, summary, m, options, bulk, on_progress, say, writer_hook,
                          server)
    except (IngestError, qc.StoreError, CheckpointError) as exc:  # set-up problems: no secret in their text
        raise IngestError(qc.redact(str(exc), [target.api_key if target is not None else None])) from exc


def _prepare_collection(handle, collection: str, dim: int, options: IngestOptions, where: str) -> tuple[bool, str]:
    """Check (dry run) or create the collection before any work: (a bulk load began, the run's
    sparse setting). ``where``: the store, for messages."""
    try:
        layout = cc.check_collection(handle, collection, dim, vector_name=schema.VECTOR_NAME)  # None: no collection
        sparse = resolve_sparse(options.sparse, layout, collection, where)
        if options.dry_run:
            return False, sparse
        created = cc.ensure_collection(handle, collection, dim, options.settings, vector_name=schema.VECTOR_NAME,
                                       bulk_load=options.bulk_load, sparse=sparse == "bm25")
        return created.bulk_load, sparse
    except (cc.CollectionMismatchError, cc.BulkLoadError, SparseError) as exc:
        raise IngestError(str(exc)) from None
    except qc.StoreError:  # e.g. the embedded store's damaged settings file: already one line
        raise
    except Exception as exc:  # noqa: BLE001 - first contact with a server: say where and what to do
        raise qc.setup_error(exc, where) from exc


def _check_collection_name(collection) -> None:
    """The embedded store's collection is a folder: a name that is no plain folder name (``a/b``,
    ``..``, a control character, too long) is refused before any work, not found by the first write.
    (A server judges its own names.)"""
    from .edge import collection_name_problem

    problem = collection_name_problem(collection)
    if problem is not None:
        raise IngestError(f"--collection {collection!r}: not a collection name for the embedded store: {problem}")


def _store_folder(target: qc.StoreTarget | None):
    """``skip_folder`` for the walk: the embedded store's own folder is never ingested."""
    if target is None or not target.embedded:
        return None
    store_path = os.path.realpath(target.folder)
    return lambda folder: os.path.realpath(folder) == store_path


def _state(handle, collection: str, found: Discovery, share: Partition | None, dry: bool, say) -> dict:
    """The stored state, with documents of an older id layout moved to this run's ids (:mod:`ingest.rekey`).

    Read whole when partitioned: an old document's owner is decided by its new id."""
    state = open_store_state(handle, collection)
    moves = rekey.plan(found.files, state)
    if moves:
        if dry:
            rekey.rename(moves, state)
            say(f"would re-key {len(moves)} documents of an older store to ids that name their folder "
                "(e.g. docs/guide.md); nothing re-embedded")
        else:
            try:
                moved = rekey.apply(handle, collection, moves, state)
            except Exception as exc:  # noqa: BLE001 - nothing lost: the next run moves the rest
                raise qc.setup_error(exc, qc.client_url(handle)) from exc
            say(f"re-keyed {len(moves)} documents ({moved} points) of an older store to ids that name their "
                "folder (e.g. docs/guide.md), once; nothing re-embedded")
    if share is not None:
        state = {k: v for k, v in state.items() if owns(share, k)}
    return state


def _write(handle, collection, found: Discovery, state, summary, m: _Model, options: IngestOptions, bulk: bool,
           on_progress, say, writer_hook, server: ServerTarget | None = None) -> Summary:
    """Run the plan: sync with a lazily loaded encoder; end (or, interrupted, undo) a bulk load;
    check that the store holds what was written (:mod:`ingest.verify`)."""
    dry = options.dry_run
    files = found.files
    writer = recording = None
    if not dry:
        writer = Uploader(handle, collection, batch_size=options.upsert_batch, max_in_flight=options.in_flight,
                          barrier_deletes=False)
        if writer_hook is not None:
            writer = writer_hook(writer)
        writer = recording = verify.Recording(writer)
    settings = m.settings(options)
    run = Run(state, writer, prune_scope=found.covers if options.prune else None, dry_run=dry, summary=summary,
              on_progress=on_progress, on_message=say)
    try:
        if options.ray is not None and not dry and _needs_embedding(files, state, settings):
            summary = _on_ray(files, settings, run, options, server)
        else:
            summary = sync(files, settings, run, encode=None if dry else _LazyEncode(m, summary, say),
                           batch_size=options.batch_size)
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                (getattr(writer, "abort", None) or writer.close)()
        if bulk:
            _restore_after_interrupt(handle, collection)
        raise
    if bulk:
        cc.end_bulk_load(handle, collection)
    if not dry and hasattr(handle, "flush"):  # the embedded store: on disk before the summary is shown
        handle.flush()
    if not dry:
        verify.check(handle, collection, {**recording.written, **run.written_elsewhere}, qc.client_url(handle))
    return summary


def _needs_embedding(files, state, settings: ChunkSettings) -> bool:
    """Whether some file is new or changed (hashing files, chunking at most one): Ray's start-up and
    actors only for work to do; an unchanged corpus, or prunes alone, run in-process."""
    return any(settings.prepare(source, state).kind in REWRITTEN for source in files)


def _on_ray(files, settings: ChunkSettings, run: Run, options: IngestOptions, server) -> Summary:
    """The same run on Ray (:mod:`ingest.distributed`): workers write to ``server``, else the driver."""
    try:
        return ray_sync(files, settings, run, device=options.device, dtype=options.dtype,
                        batch_size=options.batch_size, options=options.ray, server=server)
    except RaySetupError as exc:
        raise IngestError(str(exc)) from None


def _restore_after_interrupt(client, collection: str) -> None:
    """Interrupted during a bulk load: put the index settings back now (best effort; the marker
    in the collection lets the next run do it otherwise)."""
    try:
        cc.end_bulk_load(client, collection, interrupted=True)
    except Exception as exc:  # noqa: BLE001 - the next run restores from the marker
        log.warning("index settings not restored now (%s); the next run restores them", type(exc).__name__)
