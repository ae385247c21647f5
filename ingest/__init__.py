"""sgpt-ingest: documents → 75-token chunks → SGPT vectors → Qdrant, incremental and crash-safe.

The Python API: :func:`ingest_paths` (what the command runs) with :class:`IngestOptions`,
returning a :class:`Summary`; the building blocks other executors reuse are in
:mod:`.pipeline` (discover, state) and :mod:`.sync` (prepare, points_for, stale_ids, prune_ids).
"""

from .client import StoreError, api_key_from_env, open_client
from .collection_config import CollectionSettings, ensure_collection
from .distributed import RayOptions
from .partition import owns, parse_partition
from .pipeline import IngestError, IngestOptions, discover, ingest_paths, open_store_state
from .sync import Summary
from .upload import Uploader, UploadError

__all__ = ["CollectionSettings", "IngestError", "IngestOptions", "RayOptions", "StoreError", "Summary", "UploadError",
           "Uploader", "api_key_from_env", "discover", "ensure_collection", "ingest_paths", "open_client", "open_store_state",
           "owns", "parse_partition"]
