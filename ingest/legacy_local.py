"""Reading a qdrant-client local-mode store folder without running anything stored in it.

Why: local mode (``QdrantClient(path=...)``, the embedded store of earlier versions) keeps every
point as a *pickle* in ``collection/<name>/storage.sqlite``; opening the folder with qdrant-client
unpickles every row, so whoever can hand a user such a folder runs code on their machine. Here
each row goes through a restricted :class:`pickle.Unpickler` whose ``find_class`` admits only
the two classes local mode stores (``PointStruct`` and ``SparseVector`` of
``qdrant_client.http.models.models``, decoded into plain records, never the real classes) and
the builtins ``set``/``frozenset`` (pickle protocols 2 and 3 spell sets that way). Anything else
is refused with one line naming the file. The collection configuration comes from ``meta.json``
through ``json`` and pydantic validation.

The layout (qdrant-client 1.x, ``qdrant_client/local/qdrant_local.py`` and ``persistence.py``):
``meta.json`` = ``{"collections": {name: CreateCollection as JSON}, "aliases": {...}}``; table
``points(id TEXT PRIMARY KEY, point BLOB)``, ``id`` the base64 pickle of the point id, ``point``
the pickled ``PointStruct``; an id may have several rows (older versions wrote one per UUID
spelling), the highest rowid is the latest write. Local mode holds an exclusive ``flock`` on
``.lock`` while open; the reader takes the same lock, so no writer of an older version changes the
store while it is read.

:class:`LegacyLocalStore` answers the read-only part of the ``QdrantClient`` API that
:func:`ingest.copy.copy_collection` uses (``collection_exists``, ``get_collection``, ``count``,
``scroll``, ``retrieve``), so a legacy store is just another copy source. Its scroll offsets are
row numbers, not point ids.
"""

from __future__ import annotations

import base64
import bisect
import io
import json
import operator
import os
import pickle
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import StoreError

if TYPE_CHECKING:
    from qdrant_client import models

__all__ = ["LegacyStoreError", "LegacyLocalStore", "safe_loads", "META_FILE"]

META_FILE = "meta.json"
STORAGE_FILE = "storage.sqlite"
LEGACY_DBM_FILE = "storage.dbm"  # qdrant-client < 1.1.7, not read by qdrant-client either
_MODELS = "qdrant_client.http.models.models"


class LegacyStoreError(StoreError):
    """A local-mode store that cannot be read safely or at all: one line naming the file."""


class _Fields:
    """A pickled pydantic model's fields, taken from its state; no method of the model runs."""

    __slots__ = ("fields",)

    def __setstate__(self, state: Any) -> None:
        fields = state.get("__dict__") if isinstance(state, dict) else None
        if not isinstance(fields, dict):  # pydantic v1 and v2 both pickle {"__dict__": {...}, ...}
            raise pickle.UnpicklingError(f"unexpected state for a pickled {type(self).__name__}")
        self.fields = fields


class _Point(_Fields):
    __slots__ = ()


class _Sparse(_Fields):
    __slots__ = ()


_ALLOWED: dict[tuple[str, str], type] = {
    (_MODELS, "PointStruct"): _Point,
    (_MODELS, "SparseVector"): _Sparse,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocol 2 spells builtins the Python 2 way
    ("__builtin__", "frozenset"): frozenset,
}


class _Refused(pickle.UnpicklingError):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: dict[tuple[str, str], type]) -> None:
        super().__init__(io.BytesIO(data))
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent id")


def safe_loads(data: bytes, where: str, *, allowed: dict[tuple[str, str], type] | None = None) -> Any:
    """``pickle.loads`` that builds only allow-listed objects; else one line naming ``where``."""
    try:
        return _RestrictedUnpickler(data, _ALLOWED if allowed is None else allowed).load()
    except _Refused as exc:
        raise LegacyStoreError(
            f"{where}: refusing to load a pickled {exc.what}: a local-mode store holds only qdrant-client "
            "points, so this file was altered or not written by qdrant-client; nothing in it was run"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is one line
        raise LegacyStoreError(f"{where}: not a pickled qdrant-client point ({type(exc).__name__}: {exc})") from None


def _normalize_id(point_id: Any, where: str) -> int | str:
    """Ids as qdrant-client compares them: ints as they are, UUIDs in canonical spelling."""
    if isinstance(point_id, bool) or not isinstance(point_id, (int, str)):
        raise LegacyStoreError(f"{where}: a point id of type {type(point_id).__name__} (expected int or UUID)")
    if isinstance(point_id, int):
        return point_id
    try:
        return str(uuid.UUID(point_id))
    except ValueError:
        return point_id  # not a UUID: the target refuses it with its own message


def _plain(value: Any, where: str, point_id: Any) -> Any:
    """A payload value as JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, where, point_id) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, point_id) for v in value]
    raise LegacyStoreError(f"{where}: point {point_id}: a payload value of type {type(value).__name__} "
                           "cannot be stored in Qdrant")


def _vector(value: Any, where: str, point_id: Any) -> Any:
    from qdrant_client import models

    try:
        if isinstance(value, _Sparse):
            indices = [operator.index(i) for i in value.fields.get("indices") or []]
            values = [float(v) for v in value.fields.get("values") or []]
            if len(indices) == len(values):
                return models.SparseVector(indices=indices, values=values)
        elif isinstance(value, (list, tuple)):
            if value and isinstance(value[0], (list, tuple)):  # a multivector
                return [[float(x) for x in row] for row in value]
            return [float(x) for x in value]
    except (TypeError, ValueError):
        pass
    raise LegacyStoreError(f"{where}: point {point_id}: a vector of type {type(value).__name__} (expected floats)")


class LegacyLocalStore:
    """A qdrant-client local-mode folder, read-only, QdrantClient-shaped for copying.

    Opening reads ``meta.json`` and takes local mode's lock; a collection's rows are indexed
    (keys only) on first use; points are decoded page by page as they are scrolled."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.where = f"local-mode:{self.path}"
        self._lock_file = None
        self._configs = self._read_meta()
        self._lock()
        self._open: dict[str, _Collection] = {}

    # -- the QdrantClient subset ----------------------------------------------------------

    def get_collections(self) -> models.CollectionsResponse:
        from qdrant_client import models

        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in self._configs])

    def collection_names(self) -> list[str]:
        return list(self._configs)

    def collection_exists(self, collection_name: str) -> bool:
        return collection_name in self._configs

    def get_collection(self, collection_name: str) -> models.CollectionInfo:
        from qdrant_client import models

        config = self._config(collection_name)
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN, optimizer_status=models.OptimizersStatusOneOf.OK,
            points_count=self._collection(collection_name).count, segments_count=1,
            payload_schema={},  # local mode keeps no payload indexes
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=config.vectors, sparse_vectors=config.sparse_vectors),
                hnsw_config=models.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000),
                optimizer_config=models.OptimizersConfig(deleted_threshold=0.2, vacuum_min_vector_number=1000,
                                                         default_segment_number=0, flush_interval_sec=5),
                wal_config=models.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0),
                metadata=config.metadata,
            ),
        )

    def count(self, collection_name: str, exact: bool = True, **_: Any) -> models.CountResult:
        from qdrant_client import models

        return models.CountResult(count=self._collection(collection_name).count)

    def scroll(self, collection_name: str, limit: int = 10, offset: int | None = None,
               with_payload: bool = True, with_vectors: bool = True, **_: Any) -> tuple[list[models.Record], int | None]:
        """Points in the order they were first written; ``offset`` is the row number to go on from."""
        return self._collection(collection_name).page(limit, offset, with_payload, with_vectors)

    def retrieve(self, collection_name: str, ids: list, with_payload: bool = True, with_vectors: bool = False,
                 **_: Any) -> list[models.Record]:
        return self._collection(collection_name).retrieve(ids, with_payload, with_vectors)

    def close(self) -> None:
        for collection in self._open.values():
            collection.close()
        self._open.clear()
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def __enter__(self) -> LegacyLocalStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        from pydantic import ValidationError
        from qdrant_client import models

        meta = self.path / META_FILE
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LegacyStoreError(f"{meta}: not found; {self.path} is not a qdrant-client local-mode store") from None
        except (OSError, ValueError) as exc:
            raise LegacyStoreError(f"{meta}: cannot be read as JSON ({type(exc).__name__}: {exc})") from None
        collections = data.get("collections") if isinstance(data, dict) else None
        if not isinstance(collections, dict):
            raise LegacyStoreError(f"{meta}: has no \"collections\" object; not a qdrant-client local-mode store")
        configs = {}
        for name, config in collections.items():
            if not isinstance(config, dict):
                raise LegacyStoreError(f"{meta}: collection {name!r} has no configuration object")
            config = {k: v for k, v in config.items() if k != "init_from"}  # dropped from CreateCollection
            try:
                configs[name] = models.CreateCollection(**config)
            except (ValidationError, TypeError) as exc:
                first = str(exc).strip().splitlines()
                raise LegacyStoreError(f"{meta}: collection {name!r} has an invalid configuration "
                                       f"({first[0] if first else type(exc).__name__})") from None
        return configs

    def _lock(self) -> None:
        """Local mode's own exclusive lock, so no older sgpt-ingest or app writes meanwhile."""
        lock = self.path / ".lock"
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: qdrant-client locks through msvcrt there
            return
        try:
            self._lock_file = open(lock, "rb")  # noqa: SIM115 - held until close()
        except FileNotFoundError:
            return  # never opened by qdrant-client for writing: nobody holds it
        except OSError as exc:
            raise LegacyStoreError(f"{lock}: cannot be opened ({exc.strerror})") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise LegacyStoreError(f"{self.path}: the local-mode store is in use by another process (an older "
                                   "sgpt-ingest or a qdrant-client app); close it and run this again") from None

    def _config(self, name: str) -> Any:
        try:
            return self._configs[name]
        except KeyError:
            raise LegacyStoreError(f"{self.path}: no collection {name!r} (it has "
                                   f"{', '.join(map(repr, self._configs)) or 'none'})") from None

    def _collection(self, name: str) -> _Collection:
        self._config(name)
        if name not in self._open:
            self._open[name] = _Collection(self._storage_file(name))
        return self._open[name]

    def _storage_file(self, name: str) -> Path:
        # the name comes from meta.json: it must stay inside collection/ (qdrant-client checks the same)
        base = os.path.realpath(self.path / "collection")
        folder = os.path.realpath(os.path.join(base, name))
        if folder == base or os.path.commonpath([base, folder]) != base:
            raise LegacyStoreError(f"{self.path / META_FILE}: collection name {name!r} points outside the store folder")
        folder_path = self.path / "collection" / name
        if not (folder_path / STORAGE_FILE).exists() and (folder_path / LEGACY_DBM_FILE).exists():
            raise LegacyStoreError(f"{folder_path / LEGACY_DBM_FILE}: the dbm format of qdrant-client < 1.1.7 is "
                                   "not read; open the store once with qdrant-client 1.1.7 to convert it to SQLite")
        return folder_path / STORAGE_FILE


class _Collection:
    """One collection's SQLite file, opened read-only; ``live`` = the latest row of each point id."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.db: sqlite3.Connection | None = None
        self.live: list[int] = []  # row numbers, ascending
        self.row_of: dict[int | str, int] = {}
        if file.exists():
            self.db = self._connect()
            self._index()

    @property
    def count(self) -> int:
        return len(self.live)

    def _connect(self) -> sqlite3.Connection:
        """Read-only; in a folder we may not write, ``immutable`` (safe when no write is pending)."""
        uri = self.file.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.Error as exc:
            first = exc
        pending = [p for p in (Path(f"{self.file}-wal"), Path(f"{self.file}-journal")) if p.exists()]
        if os.access(self.file.parent, os.W_OK) or pending:
            hint = (f"; {pending[0].name} holds writes not yet in it and the folder is read-only: "
                    "copy the store somewhere writable first") if pending and not os.access(self.file.parent, os.W_OK) else ""
            raise LegacyStoreError(f"{self.file}: cannot be read as SQLite ({first}){hint}") from None
        try:
            db = sqlite3.connect(f"{uri}?immutable=1", uri=True)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.Error as exc:
            raise LegacyStoreError(f"{self.file}: cannot be read as SQLite ({exc})") from None

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise LegacyStoreError(f"{self.file}: cannot be read as a local-mode collection ({exc})") from None

    def _index(self) -> None:
        """The latest row of every id, from the keys alone (pickled ints or strings, no class)."""
        seen: set = set()
        for rowid, key in self._rows("SELECT rowid, id FROM points ORDER BY rowid DESC"):
            where = f"{self.file} (row {rowid})"
            try:
                raw = base64.b64decode(key, validate=True)
            except (ValueError, TypeError):
                raise LegacyStoreError(f"{where}: the key is not base64 of a pickled point id") from None
            point_id = _normalize_id(safe_loads(raw, where, allowed={}), where)
            if point_id in seen:
                continue  # an older copy of the point
            seen.add(point_id)
            self.row_of[point_id] = rowid
            self.live.append(rowid)
        self.live.reverse()

    def _decode(self, rowid: int, blob: bytes, with_payload: Any, with_vectors: Any) -> models.Record:
        from qdrant_client import models

        where = f"{self.file} (row {rowid})"
        point = safe_loads(bytes(blob), where)
        if not isinstance(point, _Point):
            raise LegacyStoreError(f"{where}: holds a {type(point).__name__}, not a pickled qdrant-client point")
        fields = point.fields
        point_id = _normalize_id(fields.get("id"), where)
        if self.row_of.get(point_id) != rowid:
            raise LegacyStoreError(f"{where}: the row's key and its point's id {point_id!r} disagree")
        payload = vector = None
        if with_payload:
            payload = _plain(fields.get("payload") or {}, where, point_id)
            if isinstance(with_payload, (list, tuple)):
                payload = {k: v for k, v in payload.items() if k in with_payload}
        if with_vectors:
            raw = fields.get("vector")
            if isinstance(raw, dict):
                vector = {str(name): _vector(v, where, point_id) for name, v in raw.items()}
                if isinstance(with_vectors, (list, tuple)):
                    vector = {k: v for k, v in vector.items() if k in with_vectors}
            elif raw is not None:
                vector = _vector(raw, where, point_id)
        return models.Record.model_construct(id=point_id, payload=payload, vector=vector, shard_key=None,
                                             order_value=None)

    def page(self, limit: int, offset: int | None, with_payload: Any, with_vectors: Any):
        start = 0 if offset is None else bisect.bisect_left(self.live, int(offset))
        rows = self.live[start:start + max(1, int(limit))]
        if not rows:
            return [], None
        wanted = set(rows)
        records = [self._decode(rowid, blob, with_payload, with_vectors)
                   for rowid, blob in self._rows("SELECT rowid, point FROM points WHERE rowid BETWEEN ? AND ? "
                                                 "ORDER BY rowid", (rows[0], rows[-1]))
                   if rowid in wanted]
        if len(records) != len(rows):
            raise LegacyStoreError(f"{self.file}: rows changed while it was read")
        following = start + len(rows)
        return records, (self.live[following] if following < len(self.live) else None)

    def retrieve(self, ids: list, with_payload: Any, with_vectors: Any) -> list[models.Record]:
        records = []
        for point_id in ids:
            rowid = self.row_of.get(_normalize_id(point_id, str(self.file)))
            if rowid is None:
                continue
            (blob,), = self._rows("SELECT point FROM points WHERE rowid = ?", (rowid,))
            records.append(self._decode(rowid, blob, with_payload, with_vectors))
        return records

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
