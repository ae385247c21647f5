"""The in-process executor: documents against what the store holds, in a kill-safe order.

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

What a file becomes is :meth:`ingest.plan.ChunkSettings.prepare`; the books, the duplicate-id
rule, the deletes and the prune are :class:`ingest.run.Run`, which the Ray executor
(:mod:`ingest.distributed`) shares. :func:`sync` runs them in-process: reading and chunking on a
producer thread ahead of the model, the main thread embedding in batches of ``batch_size``
chunks (the encoder packs them by token budget) and writing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sgpt_qdrant.chunk import Chunk
from .plan import ChunkSettings, Outcome, Prepared
from .read import SourceFile
from .run import CATEGORIES, Run, Summary, Writer, prune_ids

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CATEGORIES", "Run", "Summary", "Writer", "prune_ids", "sync"]


class _Producer(threading.Thread):
    """Judges the files (:meth:`Run.judge`) into a bounded queue; the model never waits for disk."""

    def __init__(self, files: Iterable[SourceFile], judge: Callable[[SourceFile], Outcome], maxsize: int = 64) -> None:
        super().__init__(name="sgpt-ingest-read", daemon=True)
        self.files, self.judge = files, judge
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.stop = threading.Event()

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
                self._put(self.judge(source))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            self._put(None)


def sync(files: Iterable[SourceFile], settings: ChunkSettings, run: Run, *,
         encode: Callable[[list[str]], np.ndarray] | None = None, batch_size: int = 256) -> Summary:
    """Bring the store in line with ``files``, keeping the books in ``run`` (a dry run counts and
    lists what would change); returns its summary.

    ``encode`` (texts → vectors) is called only when something must be embedded (it may load the
    model then); it reports its own time into the summary if it wants it counted."""
    if not run.dry_run and encode is None:
        raise ValueError("encode is needed unless dry_run")
    producer = _Producer(files, lambda source: run.judge(source, settings))
    pending: list[tuple[Prepared, Outcome, Chunk]] = []

    def flush(n: int) -> None:
        take, pending[:] = pending[:n], pending[n:]
        if not take:
            return
        vectors = encode([c.text for _, _, c in take])
        points, finished = [], []
        i = 0
        while i < len(take):
            p, outcome = take[i][0], take[i][1]
            j = i
            while j < len(take) and take[j][0] is p:
                j += 1
            group = [c for _, _, c in take[i:j]]
            points += settings.points(p.ref, group, vectors[i:j])
            if group[-1] is p.todo[-1]:
                finished.append(outcome)
            i = j
        run.write(points)
        for outcome in finished:  # one delete per document, right after its last chunk
            run.done([outcome])
        run.progress()

    producer.start()
    try:
        while True:
            item = producer.queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if run.record(item):
                p = item.prepared
                pending.extend((p, item, c) for c in p.todo)
                while len(pending) >= batch_size:
                    flush(batch_size)
            run.progress()
        while pending:
            flush(batch_size)
    finally:
        producer.stop.set()
    return run.finish()
