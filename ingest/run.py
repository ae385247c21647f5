"""One run's bookkeeping, whatever executes it: the rules both executors share, in one place.

:class:`Run` is handed each file's :class:`ingest.plan.Outcome` and keeps the books: the counts
and lists of the :class:`Summary`, the messages, the dry run's document lists. It holds the rule
for a document id that several inputs give (:meth:`Run.judge`: the first that is not skipped
wins, the others fail), the deletes of a rewritten document's stale points once its new ones
are written (:meth:`Run.done`), and the end of a run (:meth:`Run.finish`: the prune of documents
that are gone, the writer's final wait). :mod:`ingest.sync` (in-process) and
:mod:`ingest.distributed` (Ray) only move files, chunks and vectors.

Order of writes (the kill-safety protocol, see :mod:`ingest.sync`): a document's stale ids are
deleted only after all its new chunks are handed to the writer; prunes come last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from . import schema
from .plan import FAILED, REWRITTEN, SKIPPED, UNCHANGED, ChunkSettings, Outcome, file_size
from .read import SourceFile

if TYPE_CHECKING:
    from .store import DocState

#: The dry run's document lists.
CATEGORIES = ("new", "changed", "unchanged", "pruned")


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
    embed_seconds: float = 0.0  # reported by whatever embeds (the lazy encoder, Ray's actors)
    model_load_seconds: float = 0.0  # reported by whatever loads the model
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


def prune_ids(state: Mapping[str, DocState], seen: set[str], covers: Callable[[str], bool]
              ) -> tuple[list[str], list[str]]:
    """(document ids, point ids) of the stored documents that are gone from disk: not among ``seen``
    (the keys of this run's inputs), under a folder this run walked whole (``covers``, e.g.
    :meth:`ingest.read.Discovery.covers`), and written by this ingest in this id layout (their
    points carry the source of their id). Another folder's documents, nodes a LlamaIndex app
    inserted and what could not be listed or read are never among them."""
    gone = sorted(key for key, doc in state.items()
                  if key not in seen and doc.sources == {schema.source_of(key)} and covers(key))
    return gone, [i for doc in gone for i in state[doc].ids]


class Run:
    """The books of one run against ``state`` (the store as read at the start), writing to ``writer``.

    ``prune_scope`` (e.g. :meth:`ingest.read.Discovery.covers` of the walk): at the end, remove
    the stored documents it covers that no input named (:func:`prune_ids`); None: no prune.
    ``dry_run``: count and list, write nothing (no writer needed). ``on_progress`` gets the
    running :class:`Summary`, ``on_message`` one line per warning, skipped and failed file."""

    def __init__(self, state: Mapping[str, DocState], writer: Writer | None = None, *,
                 prune_scope: Callable[[str], bool] | None = None, dry_run: bool = False,
                 summary: Summary | None = None, on_progress: Callable[[Summary], None] | None = None,
                 on_message: Callable[[str], None] | None = None) -> None:
        if writer is None and not dry_run:
            raise ValueError("a writer is needed unless dry_run")
        self.state, self.writer, self.prune_scope, self.dry_run = state, writer, prune_scope, dry_run
        self.summary = summary if summary is not None else Summary()
        self.summary.dry_run = dry_run
        if dry_run:
            self.summary.documents = {c: [] for c in CATEGORIES}
        self.on_progress = on_progress
        self.say = on_message or (lambda m: None)
        self._claimed: set[str] = set()  # the duplicate-id rule (judge)
        self._named: set[str] = set()  # keys of recorded inputs that are documents (prune keeps them)
        self._lines: list[tuple[int, str, str]] = []  # (input position, list, line): failures and warnings
        self._recorded = 0
        #: point ids per document that another process wrote for this run (Ray's write tasks),
        #: for :func:`ingest.verify.check` (the run's writer never saw them)
        self.written_elsewhere: dict[str, set[str]] = {}
        self._start = time.perf_counter()

    # -- one file -------------------------------------------------------------------------------

    def judge(self, source: SourceFile, settings: ChunkSettings) -> Outcome:
        """``settings.prepare`` of ``source``, unless an earlier input gave its document id: then it
        fails (which of them wins would depend on the order). A skipped input gives the id back."""
        key = schema.doc_key(source.doc_id)
        if key in self._claimed:
            return Outcome(FAILED, key, message=f"{schema.display(source.path)}: document id {key!r} already "
                           "given by another input; ingest the folders into separate collections",
                           size=file_size(source))
        self._claimed.add(key)
        outcome = settings.prepare(source, self.state)
        if outcome.kind == SKIPPED:
            self._claimed.discard(key)  # not a document (any more): --prune removes what was stored of it
        return outcome

    def record(self, outcome: Outcome, position: int | None = None) -> bool:
        """Count one file's outcome (``position``: its place among the inputs, when outcomes arrive
        out of order). True when its chunks are to be written now: the executor writes them and
        then calls :meth:`done`; a document with nothing to embed (or a dry run) is done here."""
        s = self.summary
        position = self._recorded if position is None else position
        self._recorded += 1
        for line in outcome.warnings:
            self._add(position, "warnings", line)
            self.say(f"warning: {line}")
        s.files_seen += 1
        s.bytes_planned += outcome.size
        if outcome.kind != SKIPPED:
            self._named.add(outcome.key)
        if self.dry_run and outcome.kind in CATEGORIES:
            s.documents[outcome.kind].append(outcome.key)
        if outcome.kind == SKIPPED:
            s.skipped += 1
            self.say(f"skipped: {outcome.message}")
        elif outcome.kind == FAILED:
            s.failed += 1
            self._add(position, "failures", outcome.message)
            self.say(f"error: {outcome.message}")
        elif outcome.kind == UNCHANGED:
            s.unchanged += 1
        elif outcome.kind in REWRITTEN:
            setattr(s, outcome.kind, getattr(s, outcome.kind) + 1)
            s.chunks_planned += outcome.todo
            s.chunks_kept += outcome.kept
            s.bytes_chunked += outcome.size
            if not self.dry_run and outcome.todo:
                return True
            if self.dry_run:
                s.chunks_written += outcome.todo
            self.done([outcome])
        else:
            raise ValueError(f"unknown outcome kind {outcome.kind!r}")
        return False

    def _add(self, position: int, name: str, line: str) -> None:
        getattr(self.summary, name).append(line)
        self._lines.append((position, name, line))

    # -- writes ---------------------------------------------------------------------------------

    def write(self, points: list) -> None:
        """Upsert points through the run's writer and count them."""
        self.writer.upsert(points)
        self.wrote(len(points))

    def wrote(self, count: int) -> None:
        """Count points written elsewhere (Ray's write tasks)."""
        self.summary.chunks_written += count

    def done(self, outcomes: list[Outcome]) -> None:
        """These rewritten documents' new chunks are all handed to the writer: delete their stale ids."""
        ids = [i for o in outcomes for i in o.stale]
        self.summary.chunks_deleted += len(ids)
        if ids and not self.dry_run:
            self.writer.delete(ids)
        self.summary.ingested += len(outcomes)

    def progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.summary)

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> Summary:
        """After every write: prune the documents that are gone (when asked), wait for the writer;
        failures and warnings in input order, the run's time. The summary."""
        s = self.summary
        if self.prune_scope is not None:
            gone, ids = prune_ids(self.state, self._named, self.prune_scope)
            s.chunks_deleted += len(ids)
            s.documents_deleted = len(gone)
            if self.dry_run:
                s.documents["pruned"] = gone
            elif ids:
                self.writer.delete(ids)
        if not self.dry_run:
            self.writer.close()
        for name in ("failures", "warnings"):  # outcomes that arrived out of order (Ray): back in input order
            ours = [(p, line) for p, n, line in self._lines if n == name]
            lines = getattr(s, name)
            lines[len(lines) - len(ours):] = [line for _, line in sorted(ours, key=lambda pl: pl[0])]
        s.seconds = time.perf_counter() - self._start
        self.progress()
        return s
