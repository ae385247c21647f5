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
import pickle
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .chunk import Chunk
from .read import Skipped, SourceFile, read_document
from .sync import Summary, Writer, _Producer

__all__ = ["RayOptions", "ServerTarget", "ray_sync", "RayUnavailable"]

#: Row kinds: one "chunk" row per chunk; one row per file for what happened to it.
CHUNK = "chunk"


class RayUnavailable(RuntimeError):
    """Ray (the ``[ray]`` extra) is not installed, or the cluster cannot be reached."""


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
        raise RayUnavailable("Ray is not installed: pip install 'sgpt-qdrant[ray]'") from None
    return ray


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """Use the Ray connection already made in this process, or make one and close it at the end."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RayUnavailable(f"cannot connect to the Ray cluster {address or '(default)'}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# -- stage 1: read + chunk (Ray tasks) --------------------------------------------------------

def _prepare(row: dict, *, tokenizer, max_tokens: int, overlap: int, model: str) -> list[dict]:
    """One file → its event row, plus one row per chunk when it is (re)ingested."""
    source = SourceFile(Path(row["path"]), row["doc_id"])
    stored = pickle.loads(row["stored"]) if row["stored"] else None
    state = {} if stored is None else {source.doc_id: stored}
    event = _Producer([], state, tokenizer, max_tokens, overlap, model)._one(source)
    base = {"file": row["file"], "doc_id": source.doc_id, "path": "", "text": "", "index": -1, "start": 0,
            "end": 0, "chunk_count": 0, "content_hash": "", "version": ""}
    rows = [{**base, "kind": event.kind, "message": event.message}]
    if event.kind == "doc":
        p = event.doc
        rows[0].update(version=p.version, chunk_count=len(p.chunks))
        path = str(p.doc.path.absolute())
        rows += [{**base, "kind": CHUNK, "message": "", "path": path, "text": c.text, "index": c.index,
                  "start": c.start, "end": c.end, "chunk_count": len(p.chunks),
                  "content_hash": p.doc.content_hash, "version": p.version} for c in p.chunks]
    return rows


# -- stage 2: embed (actor pool) ---------------------------------------------------------------

class _Embedder:
    """One model per actor, loaded once; embeds the chunk rows of each batch it is given."""

    def __init__(self, model: str, device: str | None, dtype: str | None) -> None:
        import ray

        from sgpt_qdrant import Encoder
        from sgpt_qdrant import checkpoint as ckpt

        self.encoder = Encoder(ckpt.load(model), device=device, dtype=dtype)
        context = ray.get_runtime_context()
        self.name = f"{context.get_node_id()[:8]}/{context.get_actor_id()[:8]}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        is_chunk = batch["kind"] == CHUNK
        n = len(batch["kind"])
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

@dataclass
class _Outcome:
    """What a set of embedded rows says: points to write, file events, who embedded what."""

    points: list = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    per_actor: Counter = field(default_factory=Counter)
    embed_seconds: float = 0.0

    def add(self, other: "_Outcome") -> None:
        self.events += other.events
        self.per_actor.update(other.per_actor)
        self.embed_seconds += other.embed_seconds


def _outcome(batch: dict[str, np.ndarray], model: str) -> _Outcome:
    out = _Outcome(embed_seconds=float(np.sum(batch["embed_seconds"])))
    kinds = batch["kind"]
    chunk_rows = np.flatnonzero(kinds == CHUNK)
    out.per_actor.update(str(a) for a in batch["actor"][chunk_rows])
    for i in np.flatnonzero(kinds != CHUNK):
        out.events.append({k: _plain(batch[k][i]) for k in ("file", "kind", "doc_id", "message", "version",
                                                             "chunk_count")})
    # consecutive rows of one document become one make_points call
    groups: dict[tuple[str, str], list[int]] = {}
    for i in chunk_rows:
        groups.setdefault((str(batch["doc_id"][i]), str(batch["version"][i])), []).append(int(i))
    for (doc_id, version), rows in groups.items():
        first = rows[0]
        chunks = [Chunk(int(batch["index"][i]), str(batch["text"][i]), int(batch["start"][i]),
                        int(batch["end"][i]), 0) for i in rows]
        out.points += store.make_points(doc_id, str(batch["path"][first]), chunks, batch["vector"][rows],
                                        chunk_count=int(batch["chunk_count"][first]),
                                        content_hash=str(batch["content_hash"][first]), version=version,
                                        model=model)
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _make_sink(target: ServerTarget, model: str):
    """A Ray Datasink whose write tasks upsert through their own :class:`Uploader` (with retries)."""
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class QdrantDatasink(Datasink):
        def __init__(self) -> None:
            self.outcome = _Outcome()

        def write(self, blocks, ctx) -> _Outcome:
            from .upload import Uploader

            total = _Outcome()
            with store.open_client(url=target.url, api_key=target.api_key, prefer_grpc=target.prefer_grpc,
                                   timeout=target.timeout) as client:
                with Uploader(client, target.collection, batch_size=target.upsert_batch,
                              max_in_flight=target.in_flight) as uploader:
                    for block in blocks:
                        batch = BlockAccessor.for_block(block).to_batch_format("numpy")
                        if not len(batch.get("kind", ())):
                            continue
                        part = _outcome(batch, model)
                        uploader.upsert(part.points)
                        total.add(part)
                        total.points.append(len(part.points))
            total.points = [sum(total.points)]  # a count travels back, not the points
            return total

        def on_write_complete(self, write_result) -> None:
            for part in write_result.write_returns:
                self.outcome.add(part)
                self.outcome.points += part.points

        def get_name(self) -> str:
            return "QdrantWrite"

    return QdrantDatasink()


# -- the run ----------------------------------------------------------------------------------

def _contested(files: Sequence[SourceFile]) -> tuple[list[tuple[int, SourceFile]], list[dict]]:
    """Files to distribute, and events decided on the driver for ids that several inputs give.

    In-process, the first readable file with an id wins and later ones fail; that depends on the
    order, so files whose id is given more than once are settled here, in input order.
    """
    counts = Counter(f.doc_id for f in files)
    seen: set[str] = set()
    keep, events = [], []
    for i, source in enumerate(files):
        if counts[source.doc_id] == 1:
            keep.append((i, source))
            continue
        event = {"file": i, "doc_id": source.doc_id, "version": "", "chunk_count": 0}
        if source.doc_id in seen:
            events.append({**event, "kind": "failed", "message": (
                f"{source.path}: document id {source.doc_id!r} already given by another input; "
                "ingest the folders into separate collections")})
            continue
        try:
            read_document(source)
        except Skipped as exc:
            events.append({**event, "kind": "skipped", "message": str(exc)})
            continue
        except (OSError, ValueError):
            pass  # the task reports it as in-process would
        seen.add(source.doc_id)
        keep.append((i, source))
    return keep, events


def ray_sync(
    files: Iterable[SourceFile],
    state: dict[str, store.DocState],
    *,
    tokenizer,
    max_tokens: int,
    model: str,
    writer: Writer,
    overlap: int = 0,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int = 256,
    prune: bool = False,
    server: ServerTarget | None = None,
    options: RayOptions | None = None,
    on_progress: Callable[[Summary], None] | None = None,
    on_message: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    on_actor_chunks: Callable[[dict[str, int]], None] | None = None,
) -> Summary:
    """:func:`ingest.sync.sync` on Ray: the same plan, the same points, the same Summary.

    ``writer`` is the driver's (deletes, and the points themselves for the embedded store);
    with ``server`` the workers write the points. ``on_actor_chunks`` receives the chunks each
    embedding actor embedded (the spread of work). No dry run here: a dry run embeds nothing.
    """
    options = options or RayOptions()
    files = list(files)
    summary = Summary()
    start = time.perf_counter()
    keep, driver_events = _contested(files)
    with connect(options.address) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = options.show_progress
        context.print_on_execution_start = False
        gpus = ray.cluster_resources().get("GPU", 0)
        gpus_per_actor = options.gpus_per_actor if options.gpus_per_actor is not None else (1 if gpus else 0)
        actors = options.actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor else 1)
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus - actors * options.cpus_per_actor < 1:  # reading tasks would wait for ever
            raise ValueError(f"{actors} embedding actor(s) with {options.cpus_per_actor:g} CPU each leave no CPU "
                             f"of the Ray cluster's {cpus:g} for reading and chunking: use fewer actors")
        items = [{"file": i, "path": str(s.path), "doc_id": s.doc_id,
                  "stored": pickle.dumps(state[s.doc_id]) if s.doc_id in state else b""} for i, s in keep]
        outcome = _Outcome()
        if items:
            ds = ray.data.from_items(items, override_num_blocks=min(len(items), max(8, len(items) // 4)))
            ds = ds.flat_map(_prepare, fn_kwargs=dict(tokenizer=tokenizer, max_tokens=max_tokens, overlap=overlap,
                                                      model=model))
            ds = ds.map_batches(_Embedder, fn_constructor_kwargs=dict(model=model, device=device, dtype=dtype),
                                batch_size=options.batch_size or batch_size, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus_per_actor or None,
                                num_cpus=options.cpus_per_actor)
            if server is not None:
                sink = _make_sink(server, model)
                ds.write_datasink(sink)
                outcome = sink.outcome
                summary.chunks_written = int(sum(outcome.points))
                outcome.points = []
            else:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    part = _outcome(batch, model)
                    writer.upsert(part.points)
                    summary.chunks_written += len(part.points)
                    outcome.add(part)
                    _count(summary, part.events, on_message)
                    if on_progress is not None:
                        on_progress(summary)
        # events counted on the driver as batches arrived need no second count
        _count(summary, driver_events if server is None else driver_events + outcome.events, on_message)
        events = sorted(outcome.events + driver_events, key=lambda e: e["file"])
        summary.embed_seconds = outcome.embed_seconds
        summary.failures = [e["message"] for e in events if e["kind"] == "failed"]
        summary.warnings = [line for e in events if e["kind"] in {"doc", "unchanged"} and e["message"]
                            for line in e["message"].splitlines()]
    _finish(summary, events, state, writer, prune)
    summary.seconds = time.perf_counter() - start
    if on_actor_chunks is not None:
        on_actor_chunks(dict(outcome.per_actor))
    if on_progress is not None:
        on_progress(summary)
    return summary


def _count(summary: Summary, events: list[dict], on_message: Callable[[str], None]) -> None:
    for e in events:
        summary.files_seen += 1
        kind, message = e["kind"], e["message"]
        if kind in {"doc", "unchanged"} and message:
            for line in message.splitlines():
                on_message(f"warning: {line}")
        if kind == "skipped":
            summary.skipped += 1
            on_message(f"skipped: {message}")
        elif kind == "failed":
            summary.failed += 1
            on_message(f"error: {message}")
        elif kind == "unchanged":
            summary.unchanged += 1
        elif kind == "doc":
            summary.ingested += 1


def _finish(summary: Summary, events: list[dict], state: dict[str, store.DocState], writer: Writer,
            prune: bool) -> None:
    """After every write: stale chunks of re-ingested documents, then documents that are gone."""
    seen = {e["doc_id"] for e in events if e["kind"] != "skipped"}
    for e in events:
        if e["kind"] != "doc":
            continue
        doc_id, n = e["doc_id"], int(e["chunk_count"])
        stored = state.get(doc_id)
        if stored is not None:
            summary.chunks_deleted += max(0, stored.points - n)
        writer.delete(store.stale_filter(doc_id, e["version"]) if n else store.docs_filter([doc_id]))
    if prune:
        gone = sorted(set(state) - seen)
        for doc_id in gone:
            summary.chunks_deleted += state[doc_id].points
        summary.documents_deleted = len(gone)
        for k in range(0, len(gone), 256):
            writer.delete(store.docs_filter(gone[k:k + 256]))
    writer.close()
