"""sgpt-ingest: documents → 75-token chunks → SGPT vectors → Qdrant, incremental and crash-safe.

The Python API behind the command: :func:`run` takes the command's options as keywords
(``settings`` holds the :class:`CollectionSettings` fields) and returns the exit status.
"""

from .cli import run
from .collection_config import CollectionSettings, ensure_collection
from .partition import owns, parse_partition
from .upload import Uploader, UploadError

__all__ = ["CollectionSettings", "UploadError", "Uploader", "ensure_collection", "owns", "parse_partition", "run"]
