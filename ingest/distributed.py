"""Ingest on a Ray cluster (Ray Data), for corpora that outgrow one machine.

The driver finds the files and reads the stored state once (as in-process). Ray then runs

1. read + hash + chunk, one Ray task per block of files (retried when a worker dies),
2. embedding in an actor pool (one GPU per actor where the cluster has GPUs, CPU actors
   otherwise); chunks, not files, are the unit of work, so one huge file does not hold up an
   actor while the others idle,
3. writing: from the workers through a Ray ``Datasink`` (the same :class:`Uploader` and retries)
   when the store is a Qdrant server, or from the driver for the embedded store (one process
   holds that folder).

What a file becomes is :meth:`ingest.plan.ChunkSettings.prepare`, on a worker; the books, the
duplicate-id rule, the deletes and the prune are the driver's :class:`ingest.run.Run`, the same as
in-process. Rows between the stages are :meth:`ingest.plan.Outcome.to_row` (one per file) and
:func:`ingest.plan.chunk_rows` (one per chunk to embed), read back by ``from_row``.
:func:`distribute` is the driver's part whatever runs the stages (Ray here, a test in-process).

Deletes of stale chunks and of pruned documents run on the driver after every write has been
acknowledged, as in-process, so the kill-safety protocol is unchanged: a run killed anywhere
(driver or worker) leaves documents that are not "complete at this version", and the same command
finishes them. Ray retries tasks and restarts actors of dead workers itself; a retried write only
overwrites points with the same ids and values.

Ray is an optional dependency (``pip install 'sgpt-qdrant[ray]'``); it is imported when a run
asks for it (:mod:`ingest.ray_cluster`).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import client as qc
from . import schema
from .plan import BLANK_ROW, REWRITTEN, ChunkSettings, Outcome, chunk_rows, chunks_from_rows
from .ray_cluster import RayClusterError, RaySetupError, cluster_errors, connect, watch_raylet
from .read import SourceFile
from .run import Run, Summary

__all__ = ["RayOptions", "ServerTarget", "ray_sync", "distribute", "RaySetupError", "RayClusterError"]

#: The kind of a chunk row (a file's own row has its outcome's kind).
CHUNK = "chunk"
#: Columns of every row after stage 1: the file's position among the inputs, then BLANK_ROW's.
ROW_FIELDS = ("file", *BLANK_ROW)

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


@dataclass(frozen=True)
class ServerTarget:
    """Where the workers write: a collection on a Qdrant server (:class:`ingest.client.StoreTarget`,
    whose key travels to the workers, never into a message), in requests of ``upsert_batch``
    points, ``in_flight`` at once."""

    store: qc.StoreTarget
    collection: str
    upsert_batch: int = 256
    in_flight: int = 4


# -- stage 1: read + chunk (Ray tasks) --------------------------------------------------------

def _item(file: int, source: SourceFile, state) -> dict:
    """The input row of one file: where it is, and what the store holds of it (the state stays on the driver)."""
    key = schema.doc_key(source.doc_id)
    return {"file": file, "path": str(source.path), "doc_id": source.doc_id, "root": str(source.root or ""),
            "stored": pickle.dumps(state[key]) if key in state else b""}


def _prepare(item: dict, *, settings: ChunkSettings) -> list[dict]:
    """One file → its outcome's row, plus one row per chunk to embed when it is (re)written."""
    source = SourceFile(Path(item["path"]), item["doc_id"], Path(item["root"]) if item["root"] else None)
    stored = pickle.loads(item["stored"]) if item["stored"] else None
    outcome = settings.prepare(source, {} if stored is None else {schema.doc_key(source.doc_id): stored})
    base = {"file": item["file"], **BLANK_ROW}
    rows = [{**base, **outcome.to_row()}]
    if outcome.prepared is not None:
        rows += [{**base, **row, "kind": CHUNK} for row in chunk_rows(outcome.prepared)]
    return rows


# -- stage 2: embed (actor pool) ---------------------------------------------------------------

def embed_batch(encoder, name: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Vectors for the chunk rows of a batch (zeros for the others), who embedded them, and the
    batch's time spread over its rows (so any grouping of rows sums to the true total)."""
    n = len(batch.get("kind", ()))
    if n == 0:
        return batch
    is_chunk = batch["kind"] == CHUNK
    vectors = np.zeros((n, encoder.dimension), dtype=np.float32)
    start = time.perf_counter()
    if is_chunk.any():
        vectors[is_chunk] = encoder.encode([str(t) for t in batch["text"][is_chunk]])
    seconds = time.perf_counter() - start
    batch["vector"] = vectors
    batch["actor"] = np.full(n, name)
    batch["embed_seconds"] = np.full(n, seconds / n)
    return batch


class _Embedder:
    """One model per actor, loaded once; embeds the chunk rows of each batch it is given."""

    def __init__(self, model: str, device: str | None, dtype: str | None) -> None:
        import ray

        from sgpt_qdrant.engine import Encoder

        self.encoder = Encoder(model, device=device, dtype=dtype)
        context = ray.get_runtime_context()
        self.name = f"{context.get_node_id()[:8]}/{context.get_actor_id()[:8]}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return embed_batch(self.encoder, self.name, batch)


# -- stage 3: points + outcomes out of embedded batches (driver or sink) ----------------------

@dataclass
class Part:
    """What a set of embedded rows says: points for the driver to write (or, ``remote``, the count
    the write tasks wrote), the files' outcomes with their input positions, who embedded what, and
    for how long."""

    points: list = field(default_factory=list)
    remote: bool = False
    written_remotely: int = 0
    outcomes: list[tuple[int, Outcome]] = field(default_factory=list)
    per_actor: Counter = field(default_factory=Counter)
    embed_seconds: float = 0.0

    def add(self, other: Part) -> None:
        """Counts and outcomes, not points: what travels back from a write task."""
        self.written_remotely += other.written_remotely
        self.outcomes += other.outcomes
        self.per_actor.update(other.per_actor)
        self.embed_seconds += other.embed_seconds


def _row(batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: _plain(batch[k][i]) for k in ROW_FIELDS}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def part_of(batch: dict[str, np.ndarray], settings: ChunkSettings) -> Part:
    """An embedded batch (numpy columns) as points and outcomes."""
    kinds = batch["kind"]
    chunk_at = np.flatnonzero(kinds == CHUNK)
    part = Part(embed_seconds=float(np.sum(batch["embed_seconds"])))
    part.per_actor.update(str(a) for a in batch["actor"][chunk_at])
    for i in np.flatnonzero(kinds != CHUNK):
        row = _row(batch, i)
        part.outcomes.append((int(row["file"]), Outcome.from_row(row)))
    for ref, positions, chunks in chunks_from_rows(_row(batch, i) for i in chunk_at):
        part.points += settings.points(ref, chunks, batch["vector"][chunk_at[positions]])
    return part


def _make_sink(target: ServerTarget, settings: ChunkSettings):
    """A Ray Datasink whose write tasks upsert through their own :class:`Uploader` (with retries)."""
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class QdrantDatasink(Datasink):
        def __init__(self) -> None:
            self.part = Part(remote=True)

        def write(self, blocks, ctx) -> Part:
            from .upload import Uploader, UploadError

            total = Part()
            try:
                with target.store.open() as client:
                    with Uploader(client, target.collection, batch_size=target.upsert_batch,
                                  max_in_flight=target.in_flight) as uploader:
                        for block in blocks:
                            batch = BlockAccessor.for_block(block).to_batch_format("numpy")
                            if len(batch.get("kind", ())):
                                part = part_of(batch, settings)
                                uploader.upsert(part.points)
                                part.written_remotely = len(part.points)
                                total.add(part)  # counts travel back, not the points
            except Exception as exc:  # noqa: BLE001 - what Ray prints and logs must not hold the key
                message = qc.redact(str(exc) if isinstance(exc, UploadError) else qc.describe(exc),
                                    [target.store.api_key])
                raise WorkerWriteError(f"writing to {target.store.where()}: {message}") from None
            return total

        def on_write_complete(self, write_result) -> None:
            # Ray >= 2.40 passes a WriteResult; older versions the list of write() returns
            for part in getattr(write_result, "write_returns", write_result):
                self.part.add(part)

        def get_name(self) -> str:
            return "QdrantWrite"

    return QdrantDatasink()


# -- the run ----------------------------------------------------------------------------------

#: Runs stages 1-3 over the input rows and yields what comes back (on Ray: :func:`_on_ray`).
Execute = Callable[[list[dict]], Iterable[Part]]


def _settle_contested(files: Sequence[SourceFile], settings: ChunkSettings, run: Run) -> list[tuple[int, SourceFile]]:
    """The files to distribute, after :meth:`Run.judge` on the driver, in input order, of those
    whose document id several inputs give: which of them wins depends on the order, as in-process.
    The losers are recorded here; a winner that must be written is distributed like any other file."""
    counts = Counter(schema.doc_key(f.doc_id) for f in files)
    keep = []
    for i, source in enumerate(files):
        if counts[schema.doc_key(source.doc_id)] > 1:
            outcome = run.judge(source, settings)
            if outcome.kind not in REWRITTEN:
                run.record(outcome, i)
                continue
        keep.append((i, source))
    return keep


def distribute(files: Sequence[SourceFile], settings: ChunkSettings, run: Run, execute: Execute) -> Counter:
    """The driver's part of a distributed run: contested ids settled, the other files handed to
    ``execute``, what comes back written (or counted, when the workers wrote it) and recorded in
    ``run``; once every write is acknowledged, the stale ids of the rewritten documents go.
    Returns the chunks per embedding actor. :meth:`Run.finish` is the caller's."""
    keep = _settle_contested(files, settings, run)
    ids_of = {schema.doc_key(f.doc_id): f.doc_id for f in files}
    written: list[tuple[int, Outcome]] = []
    per_actor: Counter = Counter()
    for part in execute([_item(i, s, run.state) for i, s in keep]) if keep else ():
        if part.points:
            run.write(part.points)
        run.wrote(part.written_remotely)
        run.summary.embed_seconds += part.embed_seconds
        per_actor.update(part.per_actor)
        for position, outcome in part.outcomes:
            if run.record(outcome, position):
                written.append((position, outcome))
            if part.remote and outcome.kind in REWRITTEN and outcome.chunks:  # for ingest.verify
                run.written_elsewhere[outcome.key] = {schema.point_id(ids_of[outcome.key], i)
                                                      for i in range(outcome.chunks)}
        run.progress()
    run.done([o for _, o in sorted(written, key=lambda po: po[0])])
    return per_actor


def ray_sync(files: Iterable[SourceFile], settings: ChunkSettings, run: Run, *, device: str | None = None,
             dtype: str | None = None, batch_size: int = 256, options: RayOptions | None = None,
             server: ServerTarget | None = None) -> Summary:
    """:func:`ingest.sync.sync` on Ray: the same plan, the same points, the same books (``run``).

    Every embedding actor loads ``settings.model`` (a Hub id or a folder each node can read) on
    ``device`` at ``dtype``. With ``server`` the workers write the points; else the driver does,
    through ``run``'s writer (the embedded store). The driver always deletes. No dry run here: a
    dry run embeds nothing, in-process is enough."""
    if run.dry_run:
        raise ValueError("no dry run on Ray: a dry run embeds nothing (run it in-process)")
    options = options or RayOptions()
    files = list(files)
    with connect(options.address) as ray:
        if options.on_cluster_lost is not None:
            watch_raylet(options.on_cluster_lost)
        with cluster_errors(ray):
            actors, gpus_per_actor = _size_pool(ray, options, run.say)
            per_actor = distribute(files, settings, run, lambda items: _on_ray(
                ray, items, settings, actors=actors, gpus_per_actor=gpus_per_actor, device=device, dtype=dtype,
                batch_size=options.batch_size or batch_size, options=options, server=server))
    if options.on_actor_chunks is not None:
        options.on_actor_chunks(dict(per_actor))
    return run.finish()


def _size_pool(ray, options: RayOptions, say: Callable[[str], None]) -> tuple[int, float]:
    """(actors, GPUs per actor) from the options and the cluster; a pool that cannot run is refused."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = options.show_progress
    if not options.show_progress:  # nor Ray Data's INFO lines (plan, start, finish) on the console
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    gpus_per_actor = options.gpus_per_actor if options.gpus_per_actor is not None else (1 if gpus else 0)
    actors = options.actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor else 1)
    if gpus_per_actor and actors * gpus_per_actor > gpus:  # Ray Data would wait for GPUs for ever
        raise RaySetupError(f"{actors} embedding actor(s) with {gpus_per_actor:g} GPU each need more than the "
                            f"Ray cluster's {gpus:g} GPUs: use fewer actors or --ray-gpus-per-actor 0")
    if cpus - actors * options.cpus_per_actor < 1:  # reading tasks would wait for ever
        raise RaySetupError(f"{actors} embedding actor(s) with {options.cpus_per_actor:g} CPU each leave no CPU "
                            f"of the Ray cluster's {cpus:g} for reading and chunking: use fewer actors")
    say(f"ray: {actors} embedding actor(s) with {gpus_per_actor:g} GPU each, on a cluster of "
        f"{cpus:g} CPUs and {gpus:g} GPUs")
    return actors, gpus_per_actor


def _on_ray(ray, items: list[dict], settings: ChunkSettings, *, actors: int, gpus_per_actor: float,
            device: str | None, dtype: str | None, batch_size: int, options: RayOptions,
            server: ServerTarget | None) -> Iterator[Part]:
    """Stages 1-3 as a Ray Data pipeline: the parts as batches come back, or the write tasks' total."""
    ds = ray.data.from_items(items)  # up to 200 blocks of files: tasks small enough to balance
    ds = ds.flat_map(_prepare, fn_kwargs=dict(settings=settings))
    ds = ds.map_batches(_Embedder, fn_constructor_kwargs=dict(model=settings.model, device=device, dtype=dtype),
                        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                        num_gpus=gpus_per_actor or None, num_cpus=options.cpus_per_actor)
    if server is not None:
        sink = _make_sink(server, settings)
        ds.write_datasink(sink)
        yield sink.part
        return
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield part_of(batch, settings)
