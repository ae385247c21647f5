"""One file → what a run does with it: read, hash, version and (unless unchanged) chunk.

:class:`ChunkSettings` is everything a document's points are made from besides its text (the
tokenizer, max tokens, overlap, the model's name and fingerprint, the read options, the sparse
mode), as one frozen value that every executor is handed: :meth:`ChunkSettings.version` is the
key stored with each point (change any part and the document is rebuilt),
:meth:`ChunkSettings.prepare` turns one file into an :class:`Outcome`, :meth:`ChunkSettings.points`
makes the Qdrant points of chunks and their vectors.

An :class:`Outcome` is a plain value (what :class:`ingest.run.Run` counts and deletes by); the
chunks themselves ride beside it in :attr:`Outcome.prepared`, in the process that read the file.
Ray moves both between processes as rows: :meth:`Outcome.to_row` / :meth:`Outcome.from_row`, and
:func:`chunk_rows` / :func:`chunks_from_rows` (a :class:`DocRef` and a chunk per row).

The tokenizer is touched only to chunk a file that must be (re)written: a run over unchanged
files never loads it (a lazily loaded tokenizer stays unloaded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgpt_qdrant.checkpoint import CheckpointError

from . import schema
from sgpt_qdrant.chunk import CHUNKER_VERSION, Chunk, chunk_sections
from .read import Document, ReadOptions, Skipped, SourceFile, read_document

if TYPE_CHECKING:
    from .store import DocState

#: What :meth:`ChunkSettings.prepare` makes of a file.
NEW, CHANGED, UNCHANGED, SKIPPED, FAILED = "new", "changed", "unchanged", "skipped", "failed"
#: Outcomes whose chunks are (re)written.
REWRITTEN = (NEW, CHANGED)


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


@dataclass(frozen=True)
class DocRef:
    """What each point's payload needs of its document; a chunk row carries it (:func:`chunk_rows`)."""

    doc_id: str
    path: str  # absolute
    content_hash: str
    version: str
    chunk_count: int

    def to_row(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "path": self.path, "content_hash": self.content_hash,
                "version": self.version, "chunk_count": self.chunk_count}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DocRef:
        return cls(str(row["doc_id"]), str(row["path"]), str(row["content_hash"]), str(row["version"]),
                   int(row["chunk_count"]))


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
    def ref(self) -> DocRef:
        return DocRef(self.doc.doc_id, str(self.doc.path.absolute()), self.doc.content_hash, self.version,
                      len(self.chunks))

    @property
    def todo(self) -> list[Chunk]:
        """The chunks to embed and write."""
        return [c for c in self.chunks if c.index not in self.kept] if self.kept else self.chunks


def stale_ids(prepared: Prepared) -> list[str]:
    """Stored ids of a rewritten document that its new chunks do not overwrite: deleted after the
    new chunks are written. Empty for a new document."""
    if prepared.stored is None:
        return []
    keep = {schema.point_id(prepared.doc.doc_id, c.index) for c in prepared.chunks}
    return prepared.stored.stale_ids(keep)


@dataclass(frozen=True)
class Outcome:
    """What :meth:`ChunkSettings.prepare` made of one file. ``kind``: new, changed, unchanged,
    skipped, failed. For new and changed: how many chunks the document has, how many are to be
    embedded now (``todo``) and kept from a stopped run, and the stored ids to delete afterwards."""

    kind: str
    key: str
    message: str = ""
    warnings: tuple[str, ...] = ()
    size: int = 0  # bytes of the file, for progress
    chunks: int = 0
    todo: int = 0
    kept: int = 0
    stale: tuple[str, ...] = ()
    #: the document and its chunks, in the process that read it (never in a row)
    prepared: Prepared | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, kind: str, prepared: Prepared, warnings: tuple[str, ...], size: int) -> Outcome:
        return cls(kind, prepared.key, warnings=warnings, size=size, chunks=len(prepared.chunks),
                   todo=len(prepared.todo), kept=len(prepared.kept), stale=tuple(stale_ids(prepared)),
                   prepared=prepared)

    def to_row(self) -> dict[str, Any]:
        """As a row of scalar columns (lists as JSON text: the same column type in every block)."""
        return {"kind": self.kind, "key": self.key, "message": self.message, "warnings": json.dumps(self.warnings),
                "size": self.size, "chunks": self.chunks, "todo": self.todo, "kept": self.kept,
                "stale": json.dumps(self.stale)}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Outcome:
        """The outcome :meth:`to_row` wrote (without ``prepared``)."""
        return cls(str(row["kind"]), str(row["key"]), str(row["message"]), tuple(json.loads(str(row["warnings"]))),
                   int(row["size"]), int(row["chunks"]), int(row["todo"]), int(row["kept"]),
                   tuple(json.loads(str(row["stale"]))))


#: Every column of :meth:`Outcome.to_row`, of :meth:`DocRef.to_row` and of a chunk, blank.
BLANK_ROW: dict[str, Any] = {**Outcome("", "").to_row(), **DocRef("", "", "", "", 0).to_row(), "index": -1,
                             "text": "", "start": 0, "end": 0, "n_tokens": 0, "meta": ""}


def chunk_rows(prepared: Prepared) -> list[dict[str, Any]]:
    """One row per chunk to embed (``todo``: kept chunks are not embedded again), each with its document."""
    doc = prepared.ref.to_row()
    return [{**doc, "index": c.index, "text": c.text, "start": c.start, "end": c.end, "n_tokens": c.n_tokens,
             "meta": json.dumps(dict(c.meta)) if c.meta else ""} for c in prepared.todo]


def chunks_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[tuple[DocRef, list[int], list[Chunk]]]:
    """:func:`chunk_rows` read back, grouped by document: (document, positions of its rows, chunks)."""
    groups: dict[DocRef, tuple[list[int], list[Chunk]]] = {}
    for i, row in enumerate(rows):
        positions, chunks = groups.setdefault(DocRef.from_row(row), ([], []))
        positions.append(i)
        chunks.append(Chunk(int(row["index"]), str(row["text"]), int(row["start"]), int(row["end"]),
                            int(row["n_tokens"]), json.loads(str(row["meta"])) if row["meta"] else None))
    return [(ref, positions, chunks) for ref, (positions, chunks) in groups.items()]


def file_size(source: SourceFile) -> int:
    """Bytes on disk (0 when it cannot be read: the read then fails with its own message)."""
    try:
        return source.path.stat().st_size
    except OSError:
        return 0


@dataclass(frozen=True)
class ChunkSettings:
    """What a document's points are made from besides its text; one value for every executor.

    ``model`` is the name stored in the payload (and what Ray's embedding actors load);
    ``model_id`` (default: ``model``) its fingerprint, which goes into the version. ``sparse``:
    see :func:`version_of`."""

    tokenizer: Any = field(repr=False, compare=False)
    max_tokens: int
    model: str
    model_id: str = ""
    overlap: int = 0
    read: ReadOptions = ReadOptions()
    sparse: str = "none"

    def __post_init__(self) -> None:
        if not self.model_id:
            object.__setattr__(self, "model_id", self.model)

    def version(self, content_hash: str, reader: str = "") -> str:
        """The version of a document of this content (read by ``reader``): never loads the tokenizer."""
        return version_of(content_hash, self.model_id, self.max_tokens, self.overlap, reader, self.sparse)

    def prepare(self, source: SourceFile, state: Mapping[str, DocState]) -> Outcome:
        """Read, hash, version and (unless unchanged) chunk one file. Never raises for a bad file.

        The chunks a stopped run already stored as this run writes them are marked kept
        (``Prepared.kept``): they are not embedded again."""
        key = schema.doc_key(source.doc_id)
        where = schema.display(source.path)
        size = file_size(source)
        try:
            doc = read_document(source, follow_links_outside=self.read.follow_links_outside,
                                max_bytes=self.read.max_bytes, defer_formats=True)
            version = self.version(doc.content_hash, doc.reader)
            stored = state.get(key)
            if stored is not None and stored.complete(version):
                return Outcome(UNCHANGED, key, warnings=tuple(schema.display(w) for w in doc.warnings), size=size)
            if doc.deferred is not None:  # a PDF or Office file: extracted only now that it is needed
                doc = doc.deferred()
        except Skipped as exc:
            return Outcome(SKIPPED, key, message=schema.display(str(exc)), size=size)
        except (OSError, ValueError) as exc:
            return Outcome(FAILED, key, message=f"{where}: {getattr(exc, 'strerror', None) or exc}", size=size)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            return Outcome(FAILED, key, message=f"{where}: cannot read: {type(exc).__name__}: {exc}", size=size)
        warnings = tuple(schema.display(w) for w in doc.warnings)
        try:
            chunks = chunk_sections(doc.text, doc.sections, self.tokenizer, self.max_tokens, self.overlap)
        except CheckpointError:  # the model's tokenizer, loaded at the first file to chunk: no file's fault
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            return Outcome(FAILED, key, message=f"{where}: cannot chunk: {exc}", warnings=warnings, size=size)
        if not chunks and stored is None:
            return Outcome(SKIPPED, key, message=f"{where}: no text", warnings=warnings, size=size)
        kept = set()
        if stored is not None and stored.marks:
            path = str(doc.path.absolute())
            kept = {c.index for c in chunks if stored.holds(schema.point_id(doc.doc_id, c.index), version,
                                                            schema.chunk_hash(c.text, path, self.model))}
        return Outcome.of(NEW if stored is None else CHANGED, Prepared(doc, chunks, version, stored, kept), warnings,
                          size)

    def points(self, ref: DocRef, chunks: list[Chunk], vectors) -> list:
        """Qdrant points for some of a document's chunks and their vectors (same order)."""
        return schema.make_points(ref.doc_id, ref.path, chunks, vectors, chunk_count=ref.chunk_count,
                                  content_hash=ref.content_hash, version=ref.version, model=self.model,
                                  sparse=self.sparse)
