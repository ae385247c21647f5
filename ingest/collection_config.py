"""Collection settings for a Qdrant server or cluster, the existing-collection check, bulk-load mode.

Why: a corpus of tens of millions of chunks wants shards, replicas, vectors on disk, int8
quantisation and a deferred HNSW build during the first load; a collection made by someone
else must be used as it is (with a warning per difference that matters) unless its dimension
or distance make it unusable.

Bulk-load mode sets the collection's `indexing_threshold` to 0 (no HNSW build while loading, as
Qdrant's bulk-upload guide recommends) and records the value to restore in the collection's own
metadata *before* changing it, so the record lives where the data lives: a run killed mid-load
leaves the marker, and the next run against that collection (any machine, any worker) restores
the index settings and says so. Qdrant servers before 1.16 keep no collection metadata; there
bulk-load mode refuses to start rather than risk a collection left without an index.

The embedded store (Qdrant Edge, :mod:`ingest.edge`) ignores the server-only settings (shards,
replication, quantisation); it builds no HNSW index until asked (``sgpt-ingest --index``), so a bulk
load changes nothing there, but its marker is kept in the collection's settings file all the same.

Every collection gets keyword payload indexes on the fields readers filter on
(:data:`KEYWORD_INDEXES`): a filtered query or delete then reads an index, not every payload.

The checks read a :class:`CollectionLayout`, plain values: on the embedded store from its own
settings file (:meth:`ingest.edge.EdgeClient.collection_settings`), so a run that only checks and
reads never imports qdrant-client (a second or more of start-up); on a server from its
``CollectionInfo``. qdrant-client is imported where its objects are built (creation, bulk load).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .client import client_url, is_embedded, is_local
from .schema import DOC_ID_FIELD, STATE_FIELD

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

#: Payload fields that get a keyword index (what LlamaIndex deletes by, what the examples filter on).
KEYWORD_INDEXES = (DOC_ID_FIELD, "ref_doc_id", "file_name", "file_path", STATE_FIELD)

__all__ = [
    "DOC_ID_FIELD",
    "BULK_LOAD_KEY",
    "DEFAULT_INDEXING_THRESHOLD",
    "KEYWORD_INDEXES",
    "CollectionLayout",
    "CollectionSettings",
    "CollectionState",
    "CollectionMismatchError",
    "BulkLoadError",
    "check_collection",
    "collection_layout",
    "ensure_collection",
    "begin_bulk_load",
    "end_bulk_load",
    "bulk_load_pending",
    "bulk_load",
]

log = logging.getLogger(__name__)

BULK_LOAD_KEY = "sgpt_bulk_load"  # collection metadata key of the bulk-load marker
DEFAULT_INDEXING_THRESHOLD = 20000  # Qdrant's default (KB), restored when none was recorded


class CollectionMismatchError(ValueError):
    """An existing collection whose vectors cannot hold this model's (dimension or distance)."""


class BulkLoadError(RuntimeError):
    """Bulk-load mode cannot be made crash-safe on this server."""


@dataclass(frozen=True)
class CollectionSettings:
    """Creation settings; None means "the server's default" and is never reported as a difference."""

    shards: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk: bool | None = None  # vectors on disk (memmap) instead of RAM
    quantization: bool = False  # int8 scalar quantisation, quantised vectors kept in RAM
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    on_disk_payload: bool | None = None
    indexing_threshold: int | None = None

    def __post_init__(self) -> None:
        for name in ("shards", "replication_factor", "write_consistency_factor", "hnsw_ef_construct"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("hnsw_m", "indexing_threshold"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 0, got {value}")

    def vector_params(self, dim: int) -> models.VectorParams:
        from qdrant_client import models

        return models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=self.on_disk)

    def create_kwargs(self, dim: int, vector_name: str | None = None, sparse: bool = False) -> dict[str, Any]:
        """Keyword arguments for `QdrantClient.create_collection` (besides the name); ``sparse``:
        the BM25 sparse vector with the IDF modifier (:mod:`ingest.sparse`)."""
        from qdrant_client import models

        params = self.vector_params(dim)
        kwargs: dict[str, Any] = {"vectors_config": params if vector_name is None else {vector_name: params}}
        if sparse:
            from .sparse import SPARSE_VECTOR_NAME, sparse_params

            kwargs["sparse_vectors_config"] = {SPARSE_VECTOR_NAME: sparse_params()}
        for key, value in (
            ("shard_number", self.shards),
            ("replication_factor", self.replication_factor),
            ("write_consistency_factor", self.write_consistency_factor),
            ("on_disk_payload", self.on_disk_payload),
        ):
            if value is not None:
                kwargs[key] = value
        if self.hnsw_m is not None or self.hnsw_ef_construct is not None:
            kwargs["hnsw_config"] = models.HnswConfigDiff(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct)
        if self.quantization:
            kwargs["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            )
        if self.indexing_threshold is not None:
            kwargs["optimizers_config"] = models.OptimizersConfigDiff(indexing_threshold=self.indexing_threshold)
        return kwargs

    @property
    def server_only(self) -> bool:
        return any(
            v not in (None, False)
            for v in (
                self.shards, self.replication_factor, self.write_consistency_factor, self.quantization,
                self.hnsw_m, self.hnsw_ef_construct, self.on_disk_payload, self.indexing_threshold,
            )
        )


@dataclass
class CollectionState:
    """What `ensure_collection` found and did, for the CLI's messages and summary."""

    created: bool = False
    differences: list[str] = field(default_factory=list)
    restored_bulk_load: bool = False  # an interrupted bulk load's index settings were restored
    bulk_load: bool = False  # bulk-load mode is on now: call end_bulk_load at the end
    local: bool = False


@dataclass(frozen=True)
class CollectionLayout:
    """What the checks read of an existing collection, as plain values (see the module's docstring)."""

    #: dense vector name ("" for the unnamed one) → (size, distance as Qdrant names it: "Cosine")
    vectors: dict[str, tuple[int, str]]
    unnamed: bool  # one unnamed dense vector
    sparse_vectors: dict[str, str | None]  # name → modifier ("idf") or None
    metadata: dict
    payload_indexes: frozenset[str]
    indexing_threshold: int | None
    #: a server's ``models.CollectionInfo`` (what :func:`_differences` compares); None on the embedded store
    info: Any = field(default=None, repr=False, compare=False)


def collection_layout(client: QdrantClient, name: str) -> CollectionLayout:
    """The layout of the existing collection ``name``; on the embedded store without qdrant-client."""
    from .edge import EdgeClient

    if isinstance(client, EdgeClient):
        meta = client.collection_settings(name)
        return CollectionLayout(
            vectors={n: (int(v["size"]), str(v["distance"])) for n, v in meta["vectors"].items()},
            unnamed=bool(meta.get("unnamed")),
            sparse_vectors={n: (s or {}).get("modifier") for n, s in (meta.get("sparse_vectors") or {}).items()},
            metadata=meta.get("metadata") or {}, payload_indexes=frozenset(meta.get("payload_indexes") or ()),
            indexing_threshold=meta.get("indexing_threshold"))
    from qdrant_client import models

    info = client.get_collection(name)
    vectors = info.config.params.vectors
    unnamed = isinstance(vectors, models.VectorParams)
    dense = {"": vectors} if unnamed else dict(vectors or {})
    return CollectionLayout(
        vectors={n: (int(p.size), str(getattr(p.distance, "value", p.distance))) for n, p in dense.items()},
        unnamed=unnamed,
        sparse_vectors={n: getattr(p.modifier, "value", p.modifier) if p is not None and p.modifier else None
                        for n, p in (info.config.params.sparse_vectors or {}).items()},
        metadata=info.config.metadata or {}, payload_indexes=frozenset(info.payload_schema or ()),
        indexing_threshold=info.config.optimizer_config.indexing_threshold, info=info)


def _check_vectors(name: str, where: str, layout: CollectionLayout, dim: int, vector_name: str | None) -> None:
    params = layout.vectors.get(vector_name or "")
    label = "unnamed vector" if not vector_name else f"vector {vector_name!r}"
    if params is None:
        have = ["(unnamed)"] if layout.unnamed else sorted(layout.vectors)
        raise CollectionMismatchError(
            f"collection {name!r} at {where} has no {label} (it has {', '.join(map(str, have)) or 'none'}): "
            "use another --collection"
        )
    size, distance = params
    if size != dim or distance != "Cosine":
        raise CollectionMismatchError(
            f"collection {name!r} at {where} stores {size}-d {distance} vectors, this model makes "
            f"{dim}-d Cosine vectors: use another --collection (or delete that one)"
        )


def _vector_params(info: models.CollectionInfo, vector_name: str | None) -> models.VectorParams | None:
    from qdrant_client import models

    vectors = info.config.params.vectors
    if isinstance(vectors, models.VectorParams):
        return vectors if vector_name in (None, "") else None
    if isinstance(vectors, dict):
        return vectors.get(vector_name or "")
    return None


def _differences(info: models.CollectionInfo, params: models.VectorParams, s: CollectionSettings) -> list[str]:
    cfg = info.config
    have_quant = params.quantization_config or cfg.quantization_config
    hnsw = params.hnsw_config or cfg.hnsw_config
    checks = [
        ("shards", s.shards, cfg.params.shard_number),
        ("replication factor", s.replication_factor, cfg.params.replication_factor),
        ("write consistency factor", s.write_consistency_factor, cfg.params.write_consistency_factor),
        ("vectors on disk", s.on_disk, bool(params.on_disk)),
        ("payload on disk", s.on_disk_payload, cfg.params.on_disk_payload),
        ("int8 quantisation", s.quantization or None, have_quant is not None),
        ("HNSW m", s.hnsw_m, getattr(hnsw, "m", None)),
        ("HNSW ef_construct", s.hnsw_ef_construct, getattr(hnsw, "ef_construct", None)),
    ]
    if s.indexing_threshold is not None and not _marker(cfg.metadata):
        checks.append(("indexing threshold", s.indexing_threshold, cfg.optimizer_config.indexing_threshold))
    return [f"{what}: asked {want}, the collection has {have}" for what, want, have in checks
            if want is not None and want != have]


def _marker(metadata: dict | None) -> dict | None:
    marker = (metadata or {}).get(BULK_LOAD_KEY)
    return marker if isinstance(marker, dict) and marker.get("active") else None


def bulk_load_pending(client: QdrantClient, name: str) -> dict | None:
    """The marker of a bulk load that has not been ended (running elsewhere, or killed), if any."""
    return _marker(collection_layout(client, name).metadata)


def begin_bulk_load(client: QdrantClient, name: str) -> dict:
    """Defer HNSW indexing (indexing_threshold 0), having first recorded what to restore.

    A marker left by an interrupted run is kept as it is: its recorded values are the
    configured ones (the current threshold is the deferred 0). Returns the marker.
    """
    from qdrant_client import models
    from qdrant_client.http.exceptions import UnexpectedResponse

    layout = collection_layout(client, name)
    marker = _marker(layout.metadata)
    where = client_url(client)
    if marker is None:
        current = layout.indexing_threshold
        marker = {"active": True, "indexing_threshold": current, "started": time.time()}
        try:
            client.update_collection(name, metadata={BULK_LOAD_KEY: marker})
            kept = bulk_load_pending(client, name) is not None
        except UnexpectedResponse as exc:
            if exc.status_code is None or exc.status_code >= 500:
                raise
            kept = False  # an older server rejects the unknown field
        if not kept:
            raise BulkLoadError(
                f"Qdrant at {where} did not keep the bulk-load marker in the metadata of collection {name!r} "
                "(collection metadata needs Qdrant 1.16 or newer), so a crash could leave the collection "
                "without its index: run without --bulk-load"
            )
        log.warning(
            "bulk-load mode on collection %r: HNSW indexing deferred until the end (indexing threshold %s -> 0)",
            name, current if current is not None else "default",
        )
    else:
        log.warning("bulk-load mode on collection %r continues an unfinished bulk load", name)
    client.update_collection(name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0))
    return marker


def end_bulk_load(client: QdrantClient, name: str, *, interrupted: bool = False) -> bool:
    """Restore the recorded index settings and clear the marker; False when there was none."""
    marker = bulk_load_pending(client, name)
    if marker is None:
        return False
    from qdrant_client import models

    threshold = marker.get("indexing_threshold")
    if threshold is None:
        threshold = DEFAULT_INDEXING_THRESHOLD
    client.update_collection(name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=int(threshold)))
    client.update_collection(name, metadata={BULK_LOAD_KEY: None})  # restored first, then unmarked
    then = "" if is_embedded(client) else "; the server now builds the HNSW index in the background"
    if interrupted:
        log.warning(
            "collection %r: restored the index settings of an interrupted bulk load (indexing threshold %s)%s",
            name, threshold, then,
        )
    else:
        log.warning("bulk-load mode on collection %r ended: indexing threshold restored to %s%s", name, threshold, then)
    return True


class bulk_load:  # noqa: N801 - used like a function: `with bulk_load(client, name):`
    """`begin_bulk_load` on entry, `end_bulk_load` on exit (also on an exception, best effort:
    if the server cannot be reached the marker stays and the next run restores)."""

    def __init__(self, client: QdrantClient, name: str) -> None:
        self.client, self.name = client, name

    def __enter__(self) -> dict:
        return begin_bulk_load(self.client, self.name)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            end_bulk_load(self.client, self.name)
        except Exception as error:
            if exc_type is None:
                raise
            log.warning(
                "collection %r: could not restore the index settings now (%s); the next run restores them",
                self.name, error,
            )


def check_collection(client: QdrantClient | None, name: str, dim: int, *,
                     vector_name: str | None = None) -> CollectionLayout | None:
    """Read-only check before any work (dry runs too): the collection's layout when it exists and can
    hold this model's vectors, None when it does not exist, CollectionMismatchError otherwise."""
    if client is None or not client.collection_exists(name):
        return None
    layout = collection_layout(client, name)
    _check_vectors(name, client_url(client), layout, dim, vector_name)
    return layout


def _add_keyword_indexes(client: QdrantClient, name: str, have: frozenset[str], doc_id_field: str) -> None:
    missing = [key for key in dict.fromkeys((doc_id_field, *KEYWORD_INDEXES)) if key not in have]
    if not missing:
        return
    from qdrant_client import models

    for key in missing:
        client.create_payload_index(name, key, field_schema=models.PayloadSchemaType.KEYWORD, wait=True)


def ensure_collection(
    client: QdrantClient,
    name: str,
    dim: int,
    settings: CollectionSettings | None = None,
    *,
    vector_name: str | None = None,
    bulk_load: bool = False,
    doc_id_field: str = DOC_ID_FIELD,
    sparse: bool = False,
) -> CollectionState:
    """Create the collection (cosine, `dim`) or check an existing one; set up bulk-load mode.

    An existing collection is used as it is: each difference from the explicitly given
    settings is logged as a warning and returned; a different dimension or distance raises
    CollectionMismatchError. A bulk-load marker left by a killed run is restored now unless
    this run is a bulk load itself (then it continues with the recorded values).
    Keyword payload indexes on `doc_id_field` and the other :data:`KEYWORD_INDEXES` are created when
    missing (not in qdrant-client's local mode, which has none).
    """
    settings = settings or CollectionSettings()
    state = CollectionState(local=is_embedded(client))
    where = client_url(client)
    if not client.collection_exists(name):
        try:
            client.create_collection(name, **settings.create_kwargs(dim, vector_name, sparse))
            state.created = True
        except Exception:
            if not client.collection_exists(name):
                raise
            # another worker created it at the same moment: check it like any existing one
    layout = collection_layout(client, name)
    _check_vectors(name, where, layout, dim, vector_name)
    if not state.created and layout.info is not None and not state.local:
        state.differences = _differences(layout.info, _vector_params(layout.info, vector_name), settings)
        for difference in state.differences:
            log.warning("collection %r at %s is used as it is; %s", name, where, difference)
    if state.local and settings.server_only:
        log.warning(
            "the embedded store ignores server settings (shards, replication, quantisation, HNSW); "
            "use --qdrant-url for them"
        )
    if not is_local(client):
        _add_keyword_indexes(client, name, layout.payload_indexes, doc_id_field)
    if _marker(layout.metadata) is not None and not bulk_load:
        state.restored_bulk_load = end_bulk_load(client, name, interrupted=True)
    if bulk_load:
        begin_bulk_load(client, name)
        state.bulk_load = True
    return state
