"""sgpt-ingest: documents → 75-token chunks → SGPT vectors → Qdrant, incremental and crash-safe.

The Python API: :func:`ingest_paths` (what the command runs) with :class:`IngestOptions`,
returning a :class:`Summary`; the store is a :class:`StoreTarget` (or an open client). The
building blocks of an executor: :mod:`.pipeline` (discover, state), :class:`ChunkSettings`
(:mod:`.plan`: one file → an outcome and its chunks) and :class:`Run` (:mod:`.run`: the books,
the duplicate-id rule, the deletes and the prune); :mod:`.sync` and :mod:`.distributed` run them.

Exports resolve lazily (PEP 562), as in :mod:`sgpt_qdrant`: ``import sgpt_qdrant.ingest.schema``
(the query examples) or ``sgpt-ingest --help`` do not load LlamaIndex or the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "StoreError": ".client", "StoreTarget": ".client", "api_key_from_env": ".client", "open_client": ".client",
    "CollectionSettings": ".collection_config", "ensure_collection": ".collection_config",
    "RayOptions": ".distributed", "EdgeClient": ".edge", "EdgeVectorStore": ".vector_store",
    "owns": ".partition", "parse_partition": ".partition",
    "IngestError": ".pipeline", "IngestOptions": ".pipeline", "discover": ".pipeline",
    "ingest_paths": ".pipeline", "open_store_state": ".pipeline",
    "evaluate_beir": ".retrieval_eval",
    "llama_sparse_doc_fn": ".sparse", "llama_sparse_query_fn": ".sparse",
    "ChunkSettings": ".plan", "Run": ".run", "Summary": ".run",
    "Uploader": ".upload", "UploadError": ".upload",
    "CopyError": ".copy", "CopyReport": ".copy", "copy_collection": ".copy",
    "LegacyLocalStore": ".legacy_local", "LegacyStoreError": ".legacy_local", "migrate_store": ".store_cli",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .client import StoreError, StoreTarget, api_key_from_env, open_client
    from .collection_config import CollectionSettings, ensure_collection
    from .distributed import RayOptions
    from .edge import EdgeClient
    from .vector_store import EdgeVectorStore
    from .partition import owns, parse_partition
    from .pipeline import IngestError, IngestOptions, discover, ingest_paths, open_store_state
    from .retrieval_eval import evaluate_beir
    from .sparse import llama_sparse_doc_fn, llama_sparse_query_fn
    from .plan import ChunkSettings
    from .run import Run, Summary
    from .upload import Uploader, UploadError
    from .copy import CopyError, CopyReport, copy_collection
    from .legacy_local import LegacyLocalStore, LegacyStoreError
    from .store_cli import migrate_store

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
