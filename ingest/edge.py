"""The embedded store: Qdrant Edge shards behind the part of ``QdrantClient``'s API that we use.

Why: qdrant-client's local mode is a pure-Python re-implementation (a brute-force scan per
query, a filter evaluated in Python per point, a pickle per point in SQLite: a store folder that
runs code when opened). Qdrant Edge (``qdrant-edge-py``) is the server's own segment engine
in-process: WAL, payload indexes, the full filter language, HNSW. Code written against the
``QdrantClient`` API (ingest, the examples, LlamaIndex's ``QdrantVectorStore``) runs on it
unchanged: :class:`EdgeClient` takes and returns ``qdrant_client.models`` objects. Importing
qdrant-client costs a second or more (its package imports gRPC, every pydantic model and FastEmbed),
so this module imports it at the first conversion, and the calls an unchanged ``sgpt-ingest`` re-run
makes have plain-value forms (:meth:`EdgeClient.collection_settings`, :meth:`EdgeClient.iter_payloads`)
that never build those objects.

Layout of a store folder::

    <path>/.lock                               held (flock) by the one process that has the store open
    <path>/collections/<name>/collection.json  vector config, collection metadata (written atomically)
    <path>/collections/<name>/shard/           the Edge shard (segments + WAL)

One process per store: a second :class:`EdgeClient` on the same folder raises
:class:`StoreInUseError` at once (Edge's own WAL lock would refuse it per shard as well).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import qdrant_edge as qe

from .. import atomic
from .._lazy import lazy_module
from .client import StoreError

if TYPE_CHECKING:
    from qdrant_client import models
    from qdrant_client.http import models as rest
else:  # imported at the first conversion: an unchanged re-run never needs them
    models = lazy_module("qdrant_client.models")
    rest = lazy_module("qdrant_client.http.models")

__all__ = ["EdgeClient", "EdgeError", "StoreInUseError", "COLLECTIONS_DIR", "LOCK_FILE", "is_edge_store"]

COLLECTIONS_DIR = "collections"
LOCK_FILE = ".lock"
META_FILE = "collection.json"
SHARD_DIR = "shard"
FORMAT = 1  # collection.json layout version
#: Flush the shards after this many written points or seconds: a power cut loses at most that much,
#: which the next sgpt-ingest run redoes (its state is in the payload).
FLUSH_POINTS = 4096
FLUSH_SECONDS = 30.0
#: Seal the growing segment after this many written points: Edge keeps a growing (appendable)
#: segment's sparse and payload indexes and id tracker in RAM (about 2 KB per point while written),
#: a sealed one on disk. Measured on 300k ingest-shaped points (32-d, BM25, 4 keyword indexes):
#: peak RSS while writing 1,121 MB unsealed, 559 MB sealed every 100k (5 s per seal on 2 cores,
#: no HNSW: plain segments, exact search, 5 ms instead of 9-13 ms); a fresh open 710 -> 272 MB.
SEAL_POINTS = 20_000
#: Sealed segments are not merged until there are more than this many (a merge rewrites them).
_SEALED_SEGMENTS = 64
RRF_K = 2  # Qdrant's default RRF constant (qdrant_client.hybrid.fusion.DEFAULT_RANKING_CONSTANT_K)
_DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000}


class EdgeError(StoreError):
    """A problem with an embedded store folder: one line that names it."""


class StoreInUseError(EdgeError):
    """Another process has the store (or one of its shards) open."""


def is_edge_store(path: str | os.PathLike[str]) -> bool:
    """True for a folder that an :class:`EdgeClient` wrote (it has ``collections/``)."""
    return (Path(path) / COLLECTIONS_DIR).is_dir()


#: A collection is a folder here, built aside as ``.new-<name>-<8 hex>`` then renamed: the name and
#: that prefix and suffix fit a file name (255 bytes on common file systems).
MAX_NAME_BYTES = 200
#: Refused besides control characters: Qdrant's server refuses these too, so a name that works here
#: works there (and ``/`` and ``\\`` would make the folder a path).
_FORBIDDEN = '<>:"/\\|?*'


def collection_name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as an embedded collection (a folder name), or None when it is fine."""
    if not isinstance(name, str):
        return f"a collection name is text, not {type(name).__name__}"
    if not name.strip():
        return "it is empty"
    if name in {".", ".."} or name.startswith("."):
        return "it starts with '.' (a hidden or parent folder)"
    if name != name.strip():
        return "it starts or ends with white space"
    bad = sorted({c for c in name if c in _FORBIDDEN or ord(c) < 32 or ord(c) == 127})
    if bad:
        return "it contains " + ", ".join(repr(c) for c in bad) + f" (not allowed: control characters and {_FORBIDDEN})"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8 text (a lone surrogate)"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long (at most {MAX_NAME_BYTES})"
    return None


def _check_name(name: str) -> str:
    problem = collection_name_problem(name)
    if problem is not None:
        raise ValueError(f"collection name {name!r} is not allowed: {problem}")
    return name


def _write_json(path: Path, data: dict) -> None:
    """Atomically (temp file, fsync, rename, fsync of the folder): a crash leaves the old or the new file."""
    atomic.write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not possible on every platform
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _in_use(exc: BaseException) -> bool:
    text = str(exc)
    return "WouldBlock" in text or "Resource temporarily unavailable" in text or "lock" in text.lower()


# ---- conversions: qdrant_client.models -> qdrant_edge --------------------------------------------

#: By ``models.Distance`` value (a str enum: ``models.Distance.COSINE`` finds "Cosine").
_DISTANCE = {"Cosine": qe.Distance.Cosine, "Euclid": qe.Distance.Euclid, "Dot": qe.Distance.Dot,
             "Manhattan": qe.Distance.Manhattan}
_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float, "geo": qe.PayloadSchemaType.Geo, "text": qe.PayloadSchemaType.Text,
    "bool": qe.PayloadSchemaType.Bool, "datetime": qe.PayloadSchemaType.Datetime,
    "uuid": qe.PayloadSchemaType.Uuid,
}
_SCHEMA_NAME = {v: k for k, v in _SCHEMA.items()}


def _point_id(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _id_in(value: Any) -> Any:
    """An id for Edge: ints stay ints, UUID strings become UUIDs (anything else is refused like Qdrant does)."""
    if isinstance(value, bool):
        raise ValueError(f"point id {value!r} is neither an unsigned integer nor a UUID")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"point id {value} is neither an unsigned integer nor a UUID")
        return value
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"point id {value!r} is neither an unsigned integer nor a UUID") from None


def _vector_in(vector: Any, default_name: str | None) -> Any:
    """A point's vector(s) as Edge takes them: a dict of name -> dense list / SparseVector."""
    if isinstance(vector, dict):
        return {name: _one_vector(v) for name, v in vector.items()}
    return {default_name or "": _one_vector(vector)}


def _one_vector(v: Any) -> Any:
    if isinstance(v, models.SparseVector):
        return qe.SparseVector(list(v.indices), [float(x) for x in v.values])
    if isinstance(v, (models.Document, models.Image, models.InferenceObject)):
        raise ValueError("the embedded store does not run inference: pass vectors, not Document/Image objects")
    if hasattr(v, "tolist"):
        v = v.tolist()
    if v and isinstance(v[0], (list, tuple)) or (v and hasattr(v[0], "tolist")):
        return [list(map(float, row.tolist() if hasattr(row, "tolist") else row)) for row in v]
    return [float(x) for x in v]


def _vector_out(vector: Any, unnamed: bool) -> Any:
    if vector is None:
        return None
    if isinstance(vector, dict):
        out = {name: (models.SparseVector(indices=list(v.indices), values=list(v.values))
                      if isinstance(v, qe.SparseVector) else v) for name, v in vector.items()}
        if unnamed and set(out) == {""}:
            return out[""]
        return out
    return vector


def _payload_selector(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return bool(value) if value is not None else None
    if isinstance(value, (list, tuple)):
        return qe.PayloadSelector.Include(list(value))
    if isinstance(value, models.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    raise TypeError(f"with_payload={value!r} is not supported")


def _vector_selector(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return bool(value) if value is not None else None
    return list(value)


def _range(r: Any) -> Any:
    if isinstance(r, models.DatetimeRange):
        def iso(v: Any) -> str | None:
            if v is None:
                return None
            return v.isoformat() if isinstance(v, (_dt.datetime, _dt.date)) else str(v)
        return qe.RangeDateTime(gte=iso(r.gte), gt=iso(r.gt), lte=iso(r.lte), lt=iso(r.lt))
    return qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)


def _match(m: Any) -> Any:
    if isinstance(m, models.MatchValue):
        return qe.MatchValue(m.value)
    if isinstance(m, models.MatchAny):
        return qe.MatchAny(list(m.any))
    if isinstance(m, models.MatchExcept):
        return qe.MatchExcept(list(m.except_))
    if isinstance(m, models.MatchText):
        return qe.MatchText(m.text)
    if isinstance(m, models.MatchTextAny):
        return qe.MatchTextAny(m.text_any)
    if isinstance(m, models.MatchPhrase):
        return qe.MatchPhrase(m.phrase)
    raise TypeError(f"match {type(m).__name__} is not supported by the embedded store")


def _geo_point(p: models.GeoPoint) -> Any:
    return qe.GeoPoint(lon=p.lon, lat=p.lat)


def _condition(c: Any) -> Any:
    if isinstance(c, models.Filter):
        return _filter(c)
    if isinstance(c, models.FieldCondition):
        kwargs: dict[str, Any] = {}
        if c.match is not None:
            kwargs["match"] = _match(c.match)
        if c.range is not None:
            kwargs["range"] = _range(c.range)
        if c.geo_bounding_box is not None:
            b = c.geo_bounding_box
            kwargs["geo_bounding_box"] = qe.GeoBoundingBox(_geo_point(b.top_left), _geo_point(b.bottom_right))
        if c.geo_radius is not None:
            kwargs["geo_radius"] = qe.GeoRadius(_geo_point(c.geo_radius.center), c.geo_radius.radius)
        if c.geo_polygon is not None:
            poly = c.geo_polygon
            kwargs["geo_polygon"] = qe.GeoPolygon(
                [_geo_point(p) for p in poly.exterior.points],
                [[_geo_point(p) for p in ring.points] for ring in poly.interiors] if poly.interiors else None)
        if c.values_count is not None:
            v = c.values_count
            kwargs["values_count"] = qe.ValuesCount(lt=v.lt, gt=v.gt, lte=v.lte, gte=v.gte)
        if c.is_empty is not None:
            kwargs["is_empty"] = c.is_empty
        if c.is_null is not None:
            kwargs["is_null"] = c.is_null
        return qe.FieldCondition(c.key, **kwargs)
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({_id_in(i) for i in c.has_id})
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, _filter(c.nested.filter))
    raise TypeError(f"filter condition {type(c).__name__} is not supported by the embedded store")


def _conditions(value: Any) -> list | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        value = [value]
    return [_condition(c) for c in value]


def _filter(f: models.Filter | None) -> Any:
    """A ``models.Filter`` as a ``qdrant_edge.Filter`` (must / should / must_not / min_should, nested)."""
    if f is None:
        return None
    min_should = None
    if f.min_should is not None:
        min_should = qe.MinShould(_conditions(f.min_should.conditions) or [], f.min_should.min_count)
    return qe.Filter(must=_conditions(f.must), should=_conditions(f.should), must_not=_conditions(f.must_not),
                     min_should=min_should)


def _params(p: models.SearchParams | None) -> Any:
    if p is None:
        return None
    quant = None
    if p.quantization is not None:
        q = p.quantization
        quant = qe.QuantizationSearchParams(ignore=bool(q.ignore), rescore=q.rescore, oversampling=q.oversampling)
    return qe.SearchParams(hnsw_ef=p.hnsw_ef, exact=bool(p.exact), quantization=quant,
                           indexed_only=bool(p.indexed_only))


def _shard_config(meta: dict, *, sealing: bool) -> Any:
    """The shard's Edge config from its ``collection.json``. Everything Edge can keep on disk is on
    disk (a sealed segment is mapped, not loaded); ``sealing``: segments sealed without HNSW (m=0:
    exact search over a plain index), else the collection's HNSW (what ``--index`` builds)."""
    cold = qe.Memory.Cold

    def memory(on_disk: bool | None) -> Any:  # on_disk=False (asked for RAM): kept in the page cache
        return qe.Memory.Cached if on_disk is False else cold

    hnsw = meta.get("hnsw") or _DEFAULT_HNSW
    return qe.EdgeConfig(
        vectors={n: qe.EdgeVectorParams(size=v["size"], distance=_DISTANCE[v["distance"]], memory=memory(v.get("on_disk")))
                 for n, v in meta["vectors"].items()} or None,
        sparse_vectors={n: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if s["modifier"] == "idf" else None,
                                                     memory=cold)
                        for n, s in meta.get("sparse_vectors", {}).items()} or None,
        payload_memory=memory(meta.get("on_disk_payload")), id_tracker_memory=cold,
        hnsw_config=qe.HnswIndexConfig(m=0 if sealing else hnsw["m"], ef_construct=hnsw["ef_construct"],
                                       full_scan_threshold=hnsw["full_scan_threshold"]),
        # an HNSW build also merges the sealed segments (0: Edge's own number, one per CPU): one graph
        # searched per segment; 51 sealed segments of 1M points kept their 22 ms per query after --index
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1,
                                           default_segment_number=_SEALED_SEGMENTS if sealing else 0))


# ---- the client ----------------------------------------------------------------------------------

class EdgeClient:
    """A folder of Qdrant Edge shards, one per collection, used like a ``QdrantClient``.

    Not thread-safe as a whole: one thread writes at a time (the ingest writes synchronously).
    ``create=False`` never creates the folder (a reader)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self._shards: dict[str, Any] = {}
        self._metas: dict[str, dict] = {}
        self._written = 0
        self._growing: dict[str, int] = {}  # points written into each collection's growing segment
        self._last_flush = time.monotonic()
        self._lock_fd: int | None = None
        self._guard = threading.RLock()
        self._embedder = None
        if not self.path.exists():
            if not create:
                raise EdgeError(f"{self.path}: no embedded store here")
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise EdgeError(f"{self.path}: not a folder (an embedded store is a folder)")
        self._acquire()
        if create:
            (self.path / COLLECTIONS_DIR).mkdir(exist_ok=True)
        self._closed = False

    # -- the store lock --
    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: Edge's WAL lock still refuses a second writer per shard
            return
        lock = self.path / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if not os.access(self.path, os.W_OK):
                raise EdgeError(f"{self.path}: the embedded store folder is not writable ({exc.strerror})") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreInUseError(f"{self.path}: the embedded Qdrant store is in use by another process "
                                  "(an sgpt-ingest run or a query); wait for it or use a Qdrant server") from None
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    # -- collections --
    def _dir(self, name: str) -> Path:
        return self.path / COLLECTIONS_DIR / _check_name(name)

    def _meta(self, name: str) -> dict:
        meta = self._metas.get(name)
        if meta is None:
            file = self._dir(name) / META_FILE
            try:
                meta = json.loads(file.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ValueError(f"Collection {name} not found") from None
            except (OSError, ValueError) as exc:
                raise EdgeError(f"{file}: the collection's settings cannot be read ({type(exc).__name__}: the file is "
                                "damaged); restore it, or move the store away or pass another --qdrant-path") from None
            self._metas[name] = meta
        return meta

    def _save_meta(self, name: str, meta: dict) -> None:
        _write_json(self._dir(name) / META_FILE, meta)
        self._metas[name] = meta

    def _shard(self, name: str) -> Any:
        self._check_open()
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        with self._guard:  # two threads (async LlamaIndex calls) must not both load it: Edge's WAL lock
            return self._load_shard(name)

    def _load_shard(self, name: str) -> Any:
        shard = self._shards.get(name)
        if shard is None:
            self._meta(name)  # a missing collection is "not found" before Edge sees the folder
            folder = self._dir(name) / SHARD_DIR
            try:
                shard = qe.EdgeShard.load(str(folder))
            except Exception as exc:  # noqa: BLE001 - Edge raises a plain Exception
                if _in_use(exc):
                    raise StoreInUseError(f"{folder}: the embedded Qdrant store is in use by another process; "
                                          "wait for it or use a Qdrant server") from None
                raise EdgeError(f"{folder}: the Qdrant Edge shard cannot be opened ({exc})") from None
            self._shards[name] = shard
        return shard

    def _check_open(self) -> None:
        if getattr(self, "_closed", True):
            raise EdgeError(f"{self.path}: the embedded store is closed")

    def get_collections(self) -> models.CollectionsResponse:
        root = self.path / COLLECTIONS_DIR
        names = sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file()) if root.is_dir() else []
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in names])

    def collection_exists(self, collection_name: str) -> bool:
        self._check_open()
        return (self._dir(collection_name) / META_FILE).is_file()

    def create_collection(self, collection_name: str, vectors_config: Any = None,
                          sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None,
                          metadata: dict | None = None, on_disk_payload: bool | None = None,
                          hnsw_config: models.HnswConfigDiff | None = None,
                          optimizers_config: models.OptimizersConfigDiff | None = None,
                          **server_only: Any) -> bool:
        """Create the collection's shard and settings file; server-only settings (shards, replication,
        sharding, quantisation) are ignored. The folder appears whole or not at all (built aside, renamed)."""
        self._check_open()
        if self.collection_exists(collection_name):
            raise ValueError(f"Collection {collection_name} already exists")
        final = self._dir(collection_name)
        dense, unnamed = self._dense_config(vectors_config)
        sparse = {name: {"modifier": getattr(p.modifier, "value", p.modifier) if p and p.modifier else None}
                  for name, p in (sparse_vectors_config or {}).items()}
        hnsw = dict(_DEFAULT_HNSW)
        if hnsw_config is not None:
            hnsw.update({k: v for k, v in hnsw_config.model_dump().items() if v is not None and k in hnsw})
        meta = {
            "format": FORMAT, "vectors": dense, "unnamed": unnamed, "sparse_vectors": sparse,
            "metadata": {k: v for k, v in (metadata or {}).items() if v is not None},
            "on_disk_payload": on_disk_payload, "hnsw": hnsw,
            "indexing_threshold": getattr(optimizers_config, "indexing_threshold", None),
        }
        meta["sealing"] = True  # the shard is made with the sealing config (see _seal)
        config = _shard_config(meta, sealing=True)
        root = self.path / COLLECTIONS_DIR
        root.mkdir(exist_ok=True)
        staging = root / f".new-{collection_name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            qe.EdgeShard.create(str(staging / SHARD_DIR), config).close()
            _write_json(staging / META_FILE, meta)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(root)
        self._metas[collection_name] = meta
        return True

    @staticmethod
    def _dense_config(vectors_config: Any) -> tuple[dict, bool]:
        if vectors_config is None:
            return {}, False
        if isinstance(vectors_config, models.VectorParams):
            vectors_config, unnamed = {"": vectors_config}, True
        else:
            unnamed = False
        out = {}
        for name, p in vectors_config.items():
            if p.multivector_config is not None:
                raise ValueError("multivectors are not supported by the embedded store")
            out[name] = {"size": int(p.size), "distance": models.Distance(p.distance).value, "on_disk": p.on_disk}
        return out, unnamed

    def delete_collection(self, collection_name: str, **_: Any) -> bool:
        self._check_open()
        if not self.collection_exists(collection_name):
            return False
        shard = self._shards.pop(collection_name, None)
        if shard is not None:
            shard.close()
        self._metas.pop(collection_name, None)
        trash = self.path / COLLECTIONS_DIR / f".deleted-{collection_name}-{uuid.uuid4().hex[:8]}"
        os.replace(self._dir(collection_name), trash)  # gone at once; the files go after
        _fsync_dir(trash.parent)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def update_collection(self, collection_name: str, metadata: dict | None = None,
                          optimizers_config: models.OptimizersConfigDiff | None = None, **_: Any) -> bool:
        """Merge ``metadata`` (a key set to None is removed) and record the indexing threshold."""
        meta = dict(self._meta(collection_name))
        if metadata is not None:
            merged = dict(meta.get("metadata") or {})
            for key, value in metadata.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            meta["metadata"] = merged
        if optimizers_config is not None and optimizers_config.indexing_threshold is not None:
            meta["indexing_threshold"] = optimizers_config.indexing_threshold
        self._save_meta(collection_name, meta)
        return True

    def get_collection(self, collection_name: str) -> models.CollectionInfo:
        meta = self._meta(collection_name)
        info = self._shard(collection_name).info()
        dense = {name: models.VectorParams(size=v["size"], distance=models.Distance(v["distance"]),
                                           on_disk=v.get("on_disk"))
                 for name, v in meta["vectors"].items()}
        vectors = dense[""] if meta.get("unnamed") and set(dense) == {""} else dense
        sparse = {name: models.SparseVectorParams(modifier=models.Modifier(s["modifier"]) if s.get("modifier") else None)
                  for name, s in meta.get("sparse_vectors", {}).items()} or None
        hnsw = meta.get("hnsw") or _DEFAULT_HNSW
        schema = {key: models.PayloadIndexInfo(
                      data_type=models.PayloadSchemaType(_SCHEMA_NAME.get(v.data_type, "keyword")), points=v.points)
                  for key, v in info.payload_schema.items()}
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN, optimizer_status=models.OptimizersStatusOneOf.OK,
            indexed_vectors_count=info.indexed_vectors_count, points_count=info.points_count,
            segments_count=info.segments_count, payload_schema=schema,
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=vectors, sparse_vectors=sparse, shard_number=1,
                                               replication_factor=1, write_consistency_factor=1,
                                               on_disk_payload=meta.get("on_disk_payload")),
                hnsw_config=models.HnswConfig(**hnsw),
                optimizer_config=models.OptimizersConfig(default_segment_number=0, flush_interval_sec=int(FLUSH_SECONDS),
                                                         indexing_threshold=meta.get("indexing_threshold")),
                metadata=meta.get("metadata") or None,
            ),
        )

    def collection_settings(self, collection_name: str) -> dict:
        """The collection's settings as plain values, no ``qdrant_client`` objects (an unchanged re-run
        checks the collection without importing qdrant-client): its ``collection.json`` (``vectors``:
        name → ``size``, ``distance`` as ``models.Distance`` names it, ``on_disk``, the unnamed vector
        under ""; ``unnamed``; ``sparse_vectors``: name → ``modifier``; ``metadata``;
        ``indexing_threshold``; ...) and ``payload_indexes``: field → schema type ("keyword")."""
        meta = json.loads(json.dumps(self._meta(collection_name)))  # a copy the caller may change
        meta["payload_indexes"] = {key: _SCHEMA_NAME.get(v.data_type, "keyword")
                                   for key, v in self._shard(collection_name).info().payload_schema.items()}
        return meta

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None,
                             field_type: Any = None, wait: bool = True, **_: Any) -> rest.UpdateResult:
        schema = field_schema if field_schema is not None else field_type
        kind = getattr(schema, "type", schema)
        kind = getattr(kind, "value", kind)
        if kind not in _SCHEMA:
            raise ValueError(f"payload index type {schema!r} is not supported by the embedded store")
        # a keyword index on disk: in a sealed segment it is mapped, not held in RAM (see SEAL_POINTS)
        params = qe.KeywordIndexParams(on_disk=True) if kind == "keyword" else _SCHEMA[kind]
        self._update(collection_name, qe.UpdateOperation.create_field_index(field_name, params))
        return _completed()

    def delete_payload_index(self, collection_name: str, field_name: str, wait: bool = True, **_: Any) -> rest.UpdateResult:
        self._update(collection_name, qe.UpdateOperation.delete_field_index(field_name))
        return _completed()

    # -- points --
    def _update(self, name: str, operation: Any, points: int = 0) -> None:
        with self._guard:
            self._shard(name).update(operation)
            self._written += max(points, 1)
            self._growing[name] = self._growing.get(name, 0) + points
            if self._written >= FLUSH_POINTS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self.flush()
            if self._growing[name] >= SEAL_POINTS:
                self._seal(name)

    def _seal(self, name: str) -> None:
        """Turn the growing segment into a sealed one (on disk, plain index: no HNSW), so the
        ingest's memory stays flat as the store grows. Not for a collection given ``--index``: its
        new segments wait for the next build (which runs in a child, see :mod:`ingest.index`).

        A collection made before sealing existed gets the sealing config at its first seal. Edge
        builds the sealed segment aside and swaps it in: a kill meanwhile leaves the growing one."""
        self._growing[name] = 0
        meta = self._meta(name)
        if meta.get("indexing_threshold") is not None:
            return
        shard = self._shard(name)
        shard.flush()
        if not meta.get("sealing"):
            shard.close()
            self._shards.pop(name, None)
            self._shards[name] = shard = qe.EdgeShard.load(str(self._dir(name) / SHARD_DIR),
                                                           _shard_config(meta, sealing=True))
            self._save_meta(name, {**meta, "sealing": True})
        shard.optimize()
        shard.flush()

    def flush(self) -> None:
        """Write every shard's pending changes to disk (a power cut keeps what was flushed)."""
        with self._guard:
            for shard in self._shards.values():
                shard.flush()
            self._written = 0
            self._last_flush = time.monotonic()

    def _points_in(self, name: str, points: Any) -> list:
        meta = self._meta(name)
        default = "" if meta.get("unnamed") or not meta["vectors"] else None
        if isinstance(points, models.Batch):
            vectors = points.vectors
            if isinstance(vectors, dict):
                rows = [{k: vectors[k][i] for k in vectors} for i in range(len(points.ids))]
            else:
                rows = list(vectors)
            payloads = points.payloads or [None] * len(points.ids)
            points = [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(points.ids, rows, payloads)]
        out = []
        for p in points:
            if isinstance(p, dict):
                p = models.PointStruct(**p)
            vector = p.vector
            if not isinstance(vector, dict) and default is None:
                names = list(meta["vectors"])
                if len(names) != 1:
                    raise ValueError(f"collection {name!r} has named vectors {names}: pass vector as a dict")
                vector = {names[0]: vector}
            out.append(qe.Point(_id_in(p.id), _vector_in(vector, default), p.payload))
        return out

    def upsert(self, collection_name: str, points: Any, wait: bool = True, **_: Any) -> rest.UpdateResult:
        edge_points = self._points_in(collection_name, points)
        if edge_points:
            self._update(collection_name, qe.UpdateOperation.upsert_points(edge_points), len(edge_points))
        return _completed()

    def upload_points(self, collection_name: str, points: Iterable[models.PointStruct], batch_size: int = 64,
                      wait: bool = True, **_: Any) -> None:
        batch: list = []
        for point in points:
            batch.append(point)
            if len(batch) >= batch_size:
                self.upsert(collection_name, batch)
                batch = []
        if batch:
            self.upsert(collection_name, batch)

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True, **_: Any) -> rest.UpdateResult:
        selector = points_selector
        if isinstance(selector, models.PointIdsList):
            selector = list(selector.points)
        if isinstance(selector, models.FilterSelector):
            selector = selector.filter
        if isinstance(selector, models.Filter):
            operation = qe.UpdateOperation.delete_points_by_filter(_filter(selector))
            self._update(collection_name, operation)
        else:
            ids = [_id_in(i) for i in selector]
            if ids:
                self._update(collection_name, qe.UpdateOperation.delete_points(ids), len(ids))
        return _completed()

    def _unnamed(self, name: str) -> bool:
        return bool(self._meta(name).get("unnamed"))

    def _record(self, name: str, r: Any) -> models.Record:
        return models.Record(id=_point_id(r.id), payload=r.payload,
                             vector=_vector_out(r.vector, self._unnamed(name)))

    def scroll(self, collection_name: str, scroll_filter: models.Filter | None = None, limit: int = 10,
               order_by: Any = None, offset: Any = None, with_payload: Any = True, with_vectors: Any = False,
               **_: Any) -> tuple[list[models.Record], Any]:
        if order_by is not None:
            raise ValueError("scroll(order_by=...) is not supported by the embedded store")
        request = qe.ScrollRequest(offset=None if offset is None else _id_in(offset), limit=limit,
                                   filter=_filter(scroll_filter), with_payload=_payload_selector(with_payload),
                                   with_vector=_vector_selector(with_vectors))
        records, next_offset = self._shard(collection_name).scroll(request)
        return [self._record(collection_name, r) for r in records], _point_id(next_offset)

    def iter_payloads(self, collection_name: str, fields: Sequence[str], *, page: int = 8192,
                      where: tuple[str, str] | None = None) -> Iterator[tuple[str | int, dict]]:
        """Every stored point as (id, payload restricted to ``fields``), in id order, straight from Edge;
        ``where=(key, value)``: only the points whose keyword ``key`` is ``value`` (an index lookup).

        An id is what ``scroll`` gives (a UUID as its string, else the integer). What the state read
        at the start of every run needs, without a ``models.Record`` per point (pydantic validation:
        half the time of reading 100k points) or the import of qdrant-client."""
        shard = self._shard(collection_name)
        selector = qe.PayloadSelector.Include(list(fields))
        flt = None if where is None else qe.Filter(must=[qe.FieldCondition(key=where[0], match=qe.MatchValue(where[1]))])
        offset = None
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=page, filter=flt, with_payload=selector,
                                                            with_vector=False))
            for r in records:
                yield _point_id(r.id), r.payload or {}
            if offset is None:
                return

    def facet_counts(self, collection_name: str, key: str) -> dict[str, int] | None:
        """Every value of the keyword-indexed payload field ``key`` and its number of points, from
        the index alone (no payload is read); ``None`` where the field has no index."""
        shard = self._shard(collection_name)
        if key not in shard.info().payload_schema:
            return None
        limit = max(1, shard.count(qe.CountRequest(exact=True)))
        hits = shard.facet(qe.FacetRequest(key=key, limit=limit, exact=True)).hits
        return {h.value: h.count for h in hits}

    def count(self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True,
              **_: Any) -> models.CountResult:
        n = self._shard(collection_name).count(qe.CountRequest(exact=exact, filter=_filter(count_filter)))
        return models.CountResult(count=n)

    def retrieve(self, collection_name: str, ids: Sequence[Any], with_payload: Any = True,
                 with_vectors: Any = False, **_: Any) -> list[models.Record]:
        if not ids:
            return []
        records = self._shard(collection_name).retrieve([_id_in(i) for i in ids], _payload_selector(with_payload),
                                                        _vector_selector(with_vectors))
        return [self._record(collection_name, r) for r in records]

    # -- queries --
    def _default_using(self, name: str, using: str | None) -> str | None:
        if using is not None:
            return using
        meta = self._meta(name)
        if meta.get("unnamed"):
            return ""
        names = list(meta["vectors"])
        return names[0] if len(names) == 1 else None

    def _query(self, name: str, query: Any, using: str | None) -> Any:
        if query is None:
            return None
        if isinstance(query, models.NearestQuery):
            query = query.nearest
        if isinstance(query, models.FusionQuery):
            return qe.Fusion.Rrf(k=RRF_K) if query.fusion == models.Fusion.RRF else qe.Fusion.Dbsf()
        if isinstance(query, models.RrfQuery):
            return qe.Fusion.Rrf(k=query.rrf.k if query.rrf.k is not None else RRF_K, weights=query.rrf.weights)
        if isinstance(query, (str, int, uuid.UUID)) and not isinstance(query, bool):  # a stored point's vector
            records = self.retrieve(name, [query], with_payload=False, with_vectors=True)
            if not records:
                raise ValueError(f"No point with id {query} found")
            vector = records[0].vector
            query = vector.get(using or "") if isinstance(vector, dict) else vector
        if isinstance(query, models.Document):  # embedded by FastEmbed here, as qdrant-client does for a server
            query = self._embed_query(query)
        if isinstance(query, (models.Image, models.InferenceObject)):
            raise ValueError("the embedded store embeds text Documents only: pass a query vector")
        if not isinstance(query, (list, tuple, models.SparseVector)) and not hasattr(query, "tolist"):
            raise TypeError(f"query {type(query).__name__} is not supported by the embedded store")
        return qe.Query.Nearest(_one_vector(query), using=self._default_using(name, using))

    def _embed_query(self, document: models.Document) -> list[float]:
        """A query Document through qdrant-client's own FastEmbed embedder (no torch)."""
        if self._embedder is None:
            from qdrant_client.embed.embedder import Embedder

            self._embedder = Embedder()
        [vector] = self._embedder.embed(model_name=document.model, texts=[document.text], options=document.options,
                                        is_query=True)
        return vector

    def _prefetch(self, name: str, p: models.Prefetch) -> Any:
        nested = p.prefetch
        if nested is not None and not isinstance(nested, list):
            nested = [nested]
        return qe.Prefetch(limit=p.limit if p.limit is not None else 10, query=self._query(name, p.query, p.using),
                           prefetches=[self._prefetch(name, q) for q in nested] if nested else None,
                           params=_params(p.params), filter=_filter(p.filter), score_threshold=p.score_threshold)

    def _request(self, name: str, query: Any = None, using: str | None = None, prefetch: Any = None,
                 query_filter: models.Filter | None = None, search_params: models.SearchParams | None = None,
                 limit: int = 10, offset: int | None = None, with_payload: Any = True, with_vectors: Any = False,
                 score_threshold: float | None = None) -> Any:
        if prefetch is not None and not isinstance(prefetch, list):
            prefetch = [prefetch]
        return qe.QueryRequest(limit=limit, offset=offset, query=self._query(name, query, using),
                               prefetches=[self._prefetch(name, p) for p in prefetch] if prefetch else None,
                               with_vector=_vector_selector(with_vectors), with_payload=_payload_selector(with_payload),
                               filter=_filter(query_filter), score_threshold=score_threshold,
                               params=_params(search_params))

    def _scored(self, name: str, points: list) -> list[models.ScoredPoint]:
        unnamed = self._unnamed(name)
        return [models.ScoredPoint(id=_point_id(p.id), version=p.version, score=p.score, payload=p.payload,
                                   vector=_vector_out(p.vector, unnamed), order_value=p.order_value)
                for p in points]

    def query_points(self, collection_name: str, query: Any = None, using: str | None = None, prefetch: Any = None,
                     query_filter: models.Filter | None = None, search_params: models.SearchParams | None = None,
                     limit: int = 10, offset: int | None = None, with_payload: Any = True, with_vectors: Any = False,
                     score_threshold: float | None = None, **_: Any) -> rest.QueryResponse:
        request = self._request(collection_name, query, using, prefetch, query_filter, search_params, limit, offset,
                                with_payload, with_vectors, score_threshold)
        return rest.QueryResponse(points=self._scored(collection_name, self._shard(collection_name).query(request)))

    def query_batch_points(self, collection_name: str, requests: Sequence[models.QueryRequest],
                           **_: Any) -> list[rest.QueryResponse]:
        edge = [self._request(collection_name, r.query, r.using, r.prefetch, r.filter, r.params,
                              r.limit if r.limit is not None else 10, r.offset,
                              r.with_payload if r.with_payload is not None else False,
                              r.with_vector if r.with_vector is not None else False, r.score_threshold)
                for r in requests]
        results = self._shard(collection_name).query_batch(qe.QueryBatchRequest(edge))
        return [rest.QueryResponse(points=self._scored(collection_name, points)) for points in results]

    # -- index, lifecycle --
    def optimize(self, collection_name: str, *, index: bool = True) -> bool:
        """Run Edge's optimizers; ``index``: build HNSW for every segment (indexing threshold 1 KB,
        kept in the shard's config). Blocks and holds the GIL: run it in a child (:mod:`ingest.index`)."""
        with self._guard:
            if index:
                meta = self._meta(collection_name)
                shard = self._shards.pop(collection_name, None)
                if shard is not None:
                    shard.flush()
                    shard.close()
                config = _shard_config(meta, sealing=False)  # HNSW as the collection asks (sealed segments are rebuilt)
                self._shards[collection_name] = qe.EdgeShard.load(str(self._dir(collection_name) / SHARD_DIR), config)
                if meta.get("indexing_threshold") is None:  # from now on its new segments wait for the next build
                    self._save_meta(collection_name, {**meta, "indexing_threshold": 1})
            done = self._shard(collection_name).optimize()
            self._shards[collection_name].flush()
            return done

    def close(self, **_: Any) -> None:
        if getattr(self, "_closed", True):
            self._release()
            return
        with self._guard:
            try:
                for shard in self._shards.values():
                    with contextlib.suppress(Exception):
                        shard.flush()
                    shard.close()
            finally:
                self._shards.clear()
                self._closed = True
                self._release()

    def __enter__(self) -> "EdgeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"EdgeClient({str(self.path)!r})"


def _completed() -> rest.UpdateResult:
    return rest.UpdateResult(operation_id=None, status=rest.UpdateStatus.COMPLETED)
