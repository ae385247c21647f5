"""Ingest on a Ray cluster (Ray Data), for corpora that outgrow one machine.

The driver finds the files and reads the stored state once (as in-process). Ray then runs

1. read + hash + chunk, one Ray task per block of files (retried when a worker dies),
2. embedding in an actor pool (one GPU per actor where the cluster has GPUs, CPU actors
   otherwise); chunks, not files, are the unit of work, so one huge file does not hold up an
   actor while the others idle,
3. writing: from the workers through a Ray ``Datasink`` (the same :class:`Uploader` and retries)
   when the store is a Qdrant server, or from the driver for the embedded store (one process
   holds that folder).

Deletes of stale chunks and of pruned documents run on the driver after every write has been
acknowledged, as in-process, so the kill-safety protocol is unchanged: a run killed anywhere
(driver or worker) leaves documents that are not "complete at this version", and the same command
finishes them. Ray retries tasks and restarts actors of dead workers itself; a retried write only
overwrites points with the same ids and values.

Ray is an optional dependency (``pip install 'sgpt-qdrant[ray]'``); it is imported when a run
asks for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import schema
from . import client as qc
from .chunk import Chunk
from .read import ReadOptions, SourceFile
from .store import DocState
from .sync import Outcome, Summary, Writer, _Producer, prepare, prune_ids, stale_ids

__all__ = ["RayOptions", "ServerTarget", "ray_sync", "RaySetupError", "RayClusterError"]

#: Row kinds: one "chunk" row per chunk; one row per file for what happened to it.
CHUNK = "chunk"


class RaySetupError(RuntimeError):
    """Before any work: Ray (the ``[ray]`` extra) is missing, the cluster unreachable, or the actor
    pool does not fit it."""


class RayClusterError(RuntimeError):
    """Mid-run: the cluster itself failed (raylet, node, actor or object store gone, a call timed
    out), not our code. What was written is consistent (each document's marker is written last)."""


def _cluster_failure(ray, exc: BaseException) -> bool:
    """Ray's own failures (a dead raylet, node or actor; a lost object; a timeout), not an error
    raised by our code in a task (``RayTaskError`` wraps that one, unless its cause is Ray's too)."""
    errors = ray.exceptions
    if isinstance(exc, errors.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause is not None and cause is not exc and _cluster_failure(ray, cause)
    return isinstance(exc, errors.RayError)


class WorkerWriteError(RuntimeError):
    """A write task's failure as it reaches the driver (and Ray's logs): status and reason, the
    API key removed, no server body and no chained original (which may echo the request's headers)."""


@dataclass
class RayOptions:
    """How the run uses the cluster. ``None`` fields are chosen from the cluster's resources."""

    #: Cluster address (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``); None: ``RAY_ADDRESS``,
    #: else the cluster started on this machine with ``ray start``, else a new local one.
    address: str | None = None
    #: Embedding actors: default one per GPU of the cluster, else one.
    actors: int | None = None
    #: GPUs per embedding actor: default 1 when the cluster has GPUs, else 0 (CPU actors).
    gpus_per_actor: float | None = None
    #: CPUs per embedding actor (torch threads follow Ray's per-worker CPU count).
    cpus_per_actor: float = 1.0
    #: Chunks per actor call; None: the run's ``batch_size``.
    batch_size: int | None = None
    #: Ray Data's own progress bars (stderr).
    show_progress: bool = False
    #: Called (from a watchdog thread) when the raylet of the local cluster this run started dies:
    #: Ray's core worker then ends the process with exit 1 and no message, seconds later, whatever
    #: Python does; the caller (the CLI) says so in one line and exits first.
    on_cluster_lost: Callable[[str], None] | None = field(default=None, repr=False)
    #: Called at the end with the chunks each embedding actor embedded (the spread of work).
    on_actor_chunks: Callable[[dict[str, int]], None] | None = field(default=None, repr=False)


@dataclass
class ServerTarget:
    """Where workers write: a Qdrant server. The key travels to the workers, never into a message."""

    url: str
    collection: str
    api_key: str | None = field(default=None, repr=False)
    prefer_grpc: bool = False
    timeout: int | None = None
    upsert_batch: int = 256
    in_flight: int = 4


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] part of the extra
    except ImportError:
        raise RaySetupError("Ray is not installed: pip install 'sgpt-qdrant[ray]'") from None
    return ray


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """Use the Ray connection already made in this process, or make one and close it at the end."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        with _loopback_if_new(ray, address):
            ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RaySetupError(f"cannot connect to the Ray cluster {address or '(default)'}: {exc}") from None
    try:
        yield ray
    finally:
        with contextlib.suppress(Exception):  # a cluster that died mid-run: its own error is the one to show
            ray.shutdown()


#: Ray's switch between "a node others can join" (the machine's address) and loopback only.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_if_new(ray, address: str | None) -> Iterator[None]:
    """A cluster this run starts itself (no address, no ``RAY_ADDRESS``, none started on this
    machine) listens on 127.0.0.1 only: GCS, raylet and workers would otherwise listen on every
    interface for the length of a run nobody else is meant to join. Ray binds to its node address,
    which is loopback when its cluster mode is off (its setting for Windows and macOS)."""
    import os

    from ray._private import ray_constants, utils

    new = address is None and not os.environ.get("RAY_ADDRESS") and not utils.read_ray_address()
    if not new or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved, saved_env = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(_RAY_CLUSTER_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[_RAY_CLUSTER_ENV] = "0"  # the processes it starts agree
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env


# -- stage 1: read + chunk (Ray tasks) --------------------------------------------------------

def _event_row(file: int, outcome: Outcome) -> dict:
    """What the driver needs of one file's outcome; the same for files settled on the driver."""
    p = outcome.prepared
    return {"file": file, "kind": outcome.kind, "key": outcome.key, "message": outcome.message,
            "warnings": "\n".join(outcome.warnings), "size": outcome.size,
            "chunk_count": len(p.chunks) if p is not None else 0,
            # ids this document's new chunks do not overwrite: deleted after every write
            "stale": ",".join(stale_ids(p)) if p is not None else ""}


_CHUNK_ROW = {"doc_id": "", "path": "", "text": "", "index": -1, "start": 0, "end": 0, "content_hash": "",
              "version": "", "meta": ""}


def _prepare(row: dict, *, tokenizer, max_tokens: int, overlap: int, model_id: str,
             read_options: ReadOptions, model: str | None = None, sparse: str = "none") -> list[dict]:
    """One file → its event row, plus one row per chunk when it is (re)written."""
    source = SourceFile(Path(row["path"]), row["doc_id"], Path(row["root"]) if row["root"] else None)
    stored = pickle.loads(row["stored"]) if row["stored"] else None
    state = {} if stored is None else {schema.doc_key(source.doc_id): stored}
    outcome = prepare(source, state, tokenizer=tokenizer, max_tokens=max_tokens, overlap=overlap, model_id=model_id,
                      read_options=read_options, model=model, sparse=sparse)
    rows = [{**_event_row(row["file"], outcome), **_CHUNK_ROW}]
    p = outcome.prepared
    if p is not None:
        path = str(p.doc.path.absolute())
        rows += [{**rows[0], "kind": CHUNK, "message": "", "warnings": "", "stale": "", "doc_id": p.doc.doc_id,
                  "path": path, "text": c.text, "index": c.index, "start": c.start, "end": c.end,
                  "content_hash": p.doc.content_hash, "version": p.version,
                  "meta": json.dumps(c.meta) if c.meta else ""} for c in p.todo]  # kept chunks: not again
    return rows


# -- stage 2: embed (actor pool) ---------------------------------------------------------------

class _Embedder:
    """One model per actor, loaded once; embeds the chunk rows of each batch it is given."""

    def __init__(self, model: str, device: str | None, dtype: str | None) -> None:
        import ray

        from sgpt_qdrant import Encoder

        self.encoder = Encoder(model, device=device, dtype=dtype)
        context = ray.get_runtime_context()
        self.name = f"{context.get_node_id()[:8]}/{context.get_actor_id()[:8]}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch.get("kind", ()))
        if n == 0:
            return batch
        is_chunk = batch["kind"] == CHUNK
        vectors = np.zeros((n, self.encoder.dimension), dtype=np.float32)
        start = time.perf_counter()
        if is_chunk.any():
            vectors[is_chunk] = self.encoder.encode([str(t) for t in batch["text"][is_chunk]])
        seconds = time.perf_counter() - start
        batch["vector"] = vectors
        batch["actor"] = np.full(n, self.name)
        # the batch's time spread over its rows, so any grouping of rows sums to the true total
        batch["embed_seconds"] = np.full(n, seconds / n)
        return batch


# -- stage 3: points + events out of embedded batches (driver or sink) ------------------------

EVENT_FIELDS = ("file", "kind", "key", "message", "warnings", "size", "chunk_count", "stale")


@dataclass
class _Outcome:
    """What a set of embedded rows says: points to write, file events, who embedded what."""

    points: list = field(default_factory=list)
    written: int = 0
    events: list[dict] = field(default_factory=list)
    per_actor: Counter = field(default_factory=Counter)
    embed_seconds: float = 0.0

    def add(self, other: "_Outcome") -> None:
        self.written += other.written
        self.events += other.events
        self.per_actor.update(other.per_actor)
        self.embed_seconds += other.embed_seconds


def _outcome(batch: dict[str, np.ndarray], model: str, sparse: str = "none") -> _Outcome:
    out = _Outcome(embed_seconds=float(np.sum(batch["embed_seconds"])))
    kinds = batch["kind"]
    chunk_rows = np.flatnonzero(kinds == CHUNK)
    out.per_actor.update(str(a) for a in batch["actor"][chunk_rows])
    for i in np.flatnonzero(kinds != CHUNK):
        out.events.append({k: _plain(batch[k][i]) for k in EVENT_FIELDS})
    groups: dict[tuple[str, str], list[int]] = {}  # rows of one document: one make_points call
    for i in chunk_rows:
        groups.setdefault((str(batch["doc_id"][i]), str(batch["version"][i])), []).append(int(i))
    for (doc_id, version), rows in groups.items():
        first = rows[0]
        chunks = [Chunk(int(batch["index"][i]), str(batch["text"][i]), int(batch["start"][i]),
                        int(batch["end"][i]), 0, json.loads(str(batch["meta"][i])) if batch["meta"][i] else None)
                  for i in rows]
        out.points += schema.make_points(doc_id, str(batch["path"][first]), chunks, batch["vector"][rows],
                                         chunk_count=int(batch["chunk_count"][first]),
                                         content_hash=str(batch["content_hash"][first]), version=version,
                                         model=model, sparse=sparse)
    out.written = len(out.points)
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _make_sink(target: ServerTarget, model: str, sparse: str = "none"):
    """A Ray Datasink whose write tasks upsert through their own :class:`Uploader` (with retries)."""
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class QdrantDatasink(Datasink):
        def __init__(self) -> None:
            self.outcome = _Outcome()

        def write(self, blocks, ctx) -> _Outcome:
            from .upload import Uploader

            total = _Outcome()
            try:
                with qc.open_client(url=target.url, api_key=target.api_key, prefer_grpc=target.prefer_grpc,
                                    timeout=target.timeout) as client:
                    with Uploader(client, target.collection, batch_size=target.upsert_batch,
                                  max_in_flight=target.in_flight) as uploader:
                        for block in blocks:
                            batch = BlockAccessor.for_block(block).to_batch_format("numpy")
                            if len(batch.get("kind", ())):
                                part = _outcome(batch, model, sparse)
                                uploader.upsert(part.points)
                                total.add(part)  # counts travel back, not the points
            except Exception as exc:  # noqa: BLE001 - what Ray prints and logs must not hold the key
                message = qc.redact(str(exc) if isinstance(exc, _upload_error()) else qc.describe(exc),
                                    [target.api_key])
                raise WorkerWriteError(f"writing to {qc.safe_url(target.url)}: {message}") from None
            return total

        def on_write_complete(self, write_result) -> None:
            # Ray >= 2.40 passes a WriteResult; older versions the list of write() returns
            for part in getattr(write_result, "write_returns", write_result):
                self.outcome.add(part)

        def get_name(self) -> str:
            return "QdrantWrite"

    return QdrantDatasink()


def _upload_error():
    from .upload import UploadError

    return UploadError


# -- the run ----------------------------------------------------------------------------------

def _settle_contested(files: Sequence[SourceFile], prepare_one: Callable[[SourceFile], Outcome]
                      ) -> tuple[list[tuple[int, SourceFile]], list[dict]]:
    """Files to distribute, and the events of files whose document id several inputs give.

    In-process, the first of them that is not skipped wins and later ones fail: that depends on
    the order, so those files go through the in-process rule here, on the driver, in input order;
    the winner that must be written is then distributed like any other file.
    """
    counts = Counter(schema.doc_key(f.doc_id) for f in files)
    judge = _Producer([], {}, prepare_one)
    keep, events = [], []
    for i, source in enumerate(files):
        if counts[schema.doc_key(source.doc_id)] == 1:
            keep.append((i, source))
            continue
        outcome = judge._one(source)
        if outcome.kind in {"new", "changed"}:
            keep.append((i, source))
        else:
            events.append(_event_row(i, outcome))
    return keep, events


def ray_sync(
    files: Iterable[SourceFile],
    state: dict[str, DocState],
    *,
    tokenizer,
    max_tokens: int,
    model: str,
    writer: Writer,
    model_id: str | None = None,
    overlap: int = 0,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int = 256,
    prune: bool = False,
    prune_scope: Callable[[str], bool] | None = None,
    server: ServerTarget | None = None,
    options: RayOptions | None = None,
    summary: Summary | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    on_message: Callable[[str], None] = lambda m: None,
    read_options: ReadOptions = ReadOptions(),
    sparse: str = "none",
    written: dict[str, set[str]] | None = None,
) -> Summary:
    """:func:`ingest.sync.sync` on Ray: the same plan, the same points, the same Summary.

    With ``server``, ``written`` (when given) receives the point ids the workers wrote per
    document, for :func:`ingest.verify.check` (the driver's writer does not see them).

    ``model`` is what every embedding actor loads (a Hub id or a folder each node can read) and
    what the payload names; ``model_id`` (default ``model``) goes into the version. ``writer`` is
    the driver's: deletes, and the points themselves for the embedded store; with ``server`` the
    workers write the points. No dry run here: a dry run embeds nothing, in-process is enough.
    """
    options = options or RayOptions()
    if prune and prune_scope is None:
        raise ValueError("prune needs prune_scope: which stored documents this run's walk covered")
    model_id = model_id or model
    files = list(files)
    summary = summary or Summary()
    start = time.perf_counter()

    def prepare_one(source: SourceFile) -> Outcome:
        return prepare(source, state, tokenizer=tokenizer, max_tokens=max_tokens, overlap=overlap,
                       model_id=model_id, read_options=read_options, sparse=sparse)

    outcome = _Outcome()
    with connect(options.address) as ray:
        if options.on_cluster_lost is not None:
            _watch_raylet(options.on_cluster_lost)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = options.show_progress
            if not options.show_progress:  # nor Ray Data's INFO lines (plan, start, finish) on the console
                logging.getLogger("ray.data").setLevel(logging.WARNING)
            resources = ray.cluster_resources()
            gpus = resources.get("GPU", 0)
            gpus_per_actor = options.gpus_per_actor if options.gpus_per_actor is not None else (1 if gpus else 0)
            actors = options.actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor else 1)
            cpus = resources.get("CPU", 0)
            if gpus_per_actor and actors * gpus_per_actor > gpus:  # Ray Data would wait for GPUs for ever
                raise RaySetupError(f"{actors} embedding actor(s) with {gpus_per_actor:g} GPU each need more than the "
                                    f"Ray cluster's {gpus:g} GPUs: use fewer actors or --ray-gpus-per-actor 0")
            if cpus - actors * options.cpus_per_actor < 1:  # reading tasks would wait for ever
                raise RaySetupError(f"{actors} embedding actor(s) with {options.cpus_per_actor:g} CPU each leave no CPU "
                                 f"of the Ray cluster's {cpus:g} for reading and chunking: use fewer actors")
            on_message(f"ray: {actors} embedding actor(s) with {gpus_per_actor:g} GPU each, on a cluster of "
                       f"{cpus:g} CPUs and {gpus:g} GPUs")
            keep, events = _settle_contested(files, prepare_one)
            _count(summary, events, on_message)
            items = [{"file": i, "path": str(s.path), "doc_id": s.doc_id, "root": str(s.root or ""),
                      "stored": pickle.dumps(state[k]) if (k := schema.doc_key(s.doc_id)) in state else b""}
                     for i, s in keep]
            if items:
                ds = ray.data.from_items(items)  # up to 200 blocks of files: tasks small enough to balance
                ds = ds.flat_map(_prepare, fn_kwargs=dict(tokenizer=tokenizer, max_tokens=max_tokens, overlap=overlap,
                                                          model_id=model_id, read_options=read_options,
                                                          model=model, sparse=sparse))
                ds = ds.map_batches(_Embedder, fn_constructor_kwargs=dict(model=model, device=device, dtype=dtype),
                                    batch_size=options.batch_size or batch_size,
                                    batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                                    num_gpus=gpus_per_actor or None, num_cpus=options.cpus_per_actor)
                if server is not None:
                    sink = _make_sink(server, model, sparse)
                    ds.write_datasink(sink)
                    outcome = sink.outcome
                    summary.chunks_written += outcome.written
                    _count(summary, outcome.events, on_message)
                else:
                    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                        part = _outcome(batch, model, sparse)
                        writer.upsert(part.points)
                        summary.chunks_written += part.written
                        outcome.add(part)
                        _count(summary, part.events, on_message)
                        if on_progress is not None:
                            on_progress(summary)
        except Exception as exc:
            if not _cluster_failure(ray, exc):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise RayClusterError(f"the Ray cluster stopped during the run ({type(exc).__name__}"
                                  f"{': ' + first if first else ''})") from None
    events = sorted(events + outcome.events, key=lambda e: e["file"])
    if server is not None and written is not None:
        ids_of = {schema.doc_key(f.doc_id): f.doc_id for f in files}
        for e in events:
            if e["kind"] in ("new", "changed") and e["chunk_count"]:
                written[e["key"]] = {schema.point_id(ids_of[e["key"]], i) for i in range(e["chunk_count"])}
    summary.embed_seconds += outcome.embed_seconds
    summary.failures.extend(e["message"] for e in events if e["kind"] == "failed")
    summary.warnings = [line for e in events if e["warnings"] for line in e["warnings"].splitlines()]
    _finish(summary, events, state, writer, prune_scope if prune else None)
    summary.seconds = time.perf_counter() - start
    if options.on_actor_chunks is not None:
        options.on_actor_chunks(dict(outcome.per_actor))
    if on_progress is not None:
        on_progress(summary)
    return summary


def _watch_raylet(on_lost: Callable[[str], None], every: float = 0.2) -> None:
    """A daemon thread polling the raylet this process started (none for a cluster joined by address)."""
    import threading

    try:
        from ray._private import ray_constants, worker

        raylets = [p.process for p in worker._global_node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])]
    except Exception:  # noqa: BLE001 - Ray's internals moved, or no node of ours: no watchdog
        return
    if not raylets:
        return

    def watch() -> None:
        while True:
            for raylet in raylets:
                code = raylet.poll()
                if code is not None:
                    on_lost(f"the Ray cluster stopped during the run (its raylet, pid {raylet.pid}, exited with {code})")
                    return
            time.sleep(every)

    threading.Thread(target=watch, name="sgpt-raylet-watch", daemon=True).start()


def _count(summary: Summary, events: list[dict], on_message: Callable[[str], None]) -> None:
    """Tally file events as :func:`ingest.sync.sync` does (lists are set, in input order, at the end)."""
    for e in events:
        kind, message = e["kind"], e["message"]
        for line in e["warnings"].splitlines():
            on_message(f"warning: {line}")
        summary.files_seen += 1
        summary.bytes_planned += e["size"]
        if kind == "skipped":
            summary.skipped += 1
            on_message(f"skipped: {message}")
        elif kind == "failed":
            summary.failed += 1
            on_message(f"error: {message}")
        elif kind == "unchanged":
            summary.unchanged += 1
        else:
            setattr(summary, kind, getattr(summary, kind) + 1)
            summary.ingested += 1
            summary.chunks_planned += e["chunk_count"]
            summary.bytes_chunked += e["size"]


def _finish(summary: Summary, events: list[dict], state: dict[str, DocState], writer: Writer,
            prune_scope: Callable[[str], bool] | None) -> None:
    """After every write: ids of re-written documents their new chunks did not overwrite, then
    documents that are gone (when ``prune_scope``: those it covers), then the writer's final wait."""
    stale = [i for e in events if e["stale"] for i in e["stale"].split(",")]
    summary.chunks_deleted += len(stale)
    if stale:
        writer.delete(stale)
    if prune_scope is not None:
        gone, ids = prune_ids(state, {e["key"] for e in events if e["kind"] != "skipped"}, prune_scope)
        summary.chunks_deleted += len(ids)
        summary.documents_deleted = len(gone)
        if ids:
            writer.delete(ids)
    writer.close()
