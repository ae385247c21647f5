"""sgpt-ingest: documents → 75-token chunks → SGPT vectors → Qdrant, incremental and crash-safe.

The Python API: :func:`ingest_paths` (what the command runs) with :class:`IngestOptions`,
returning a :class:`Summary`; the building blocks other executors reuse are in
:mod:`.pipeline` (discover, state) and :mod:`.sync` (prepare, points_for, stale_ids, prune_ids).

Exports resolve lazily (PEP 562), as in :mod:`sgpt_qdrant`: ``import sgpt_qdrant.ingest.schema``
(the query examples) or ``sgpt-ingest --help`` do not load LlamaIndex or the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "StoreError": ".client", "api_key_from_env": ".client", "open_client": ".client",
    "CollectionSettings": ".collection_config", "ensure_collection": ".collection_config",
    "RayOptions": ".distributed", "EdgeClient": ".edge", "EdgeVectorStore": ".vector_store",
    "owns": ".partition", "parse_partition": ".partition",
    "IngestError": ".pipeline", "IngestOptions": ".pipeline", "discover": ".pipeline",
    "ingest_paths": ".pipeline", "open_store_state": ".pipeline",
    "Summary": ".sync",
    "Uploader": ".upload", "UploadError": ".upload",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .client import StoreError, api_key_from_env, open_client
    from .collection_config import CollectionSettings, ensure_collection
    from .distributed import RayOptions
    from .edge import EdgeClient
    from .vector_store import EdgeVectorStore
    from .partition import owns, parse_partition
    from .pipeline import IngestError, IngestOptions, discover, ingest_paths, open_store_state
    from .sync import Summary
    from .upload import Uploader, UploadError

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
