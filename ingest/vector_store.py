"""LlamaIndex over the embedded store: ``QdrantVectorStore`` itself, given an :class:`ingest.edge.EdgeClient`.

Why a subclass and not a new store: LlamaIndex's ``QdrantVectorStore`` already turns nodes into
payloads and back (``node_to_metadata_dict`` / ``metadata_dict_to_node``) and ``MetadataFilters``
into Qdrant filters; it only needs a client, and EdgeClient speaks that client's API. So nodes
read back exactly as ``QdrantVectorStore`` reads them from a server. What Edge lacks is an async
client: the async methods run the sync ones in a worker thread.

    store = EdgeVectorStore.open("./qdrant_storage", collection_name="documents")
    index = VectorStoreIndex.from_vector_store(store, embed_model=SGPTEmbedding(...))
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, List, Optional

from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import MetadataFilters, VectorStoreQuery, VectorStoreQueryResult
from llama_index.vector_stores.qdrant import QdrantVectorStore

from .client import DEFAULT_PATH, open_embedded
from .edge import EdgeClient
from .schema import DEFAULT_COLLECTION

__all__ = ["EdgeVectorStore"]


class EdgeVectorStore(QdrantVectorStore):
    """A ``QdrantVectorStore`` on a Qdrant Edge store folder (one process at a time: see :mod:`ingest.edge`)."""

    def __init__(self, collection_name: str = DEFAULT_COLLECTION, client: EdgeClient | None = None,
                 **kwargs: Any) -> None:
        if client is None:
            raise ValueError("EdgeVectorStore needs an EdgeClient: use EdgeVectorStore.open(path)")
        if kwargs.get("aclient") is not None:
            raise ValueError("EdgeVectorStore has no async client: its async methods run in a thread")
        super().__init__(collection_name=collection_name, client=client, **kwargs)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_PATH, collection_name: str = DEFAULT_COLLECTION,
             **kwargs: Any) -> "EdgeVectorStore":
        """The store in ``path`` (created when missing); ``close()`` it, or use it in a ``with`` block."""
        client = open_embedded(path)
        try:
            return cls(collection_name=collection_name, client=client, **kwargs)
        except BaseException:
            client.close()
            raise

    @classmethod
    def class_name(cls) -> str:
        return "EdgeVectorStore"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "EdgeVectorStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- async: the sync methods in a thread (there is no async Edge client) --
    async def async_add(self, nodes: List[BaseNode], **kwargs: Any) -> List[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **kwargs)

    async def adelete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                            **kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    async def aget_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                         limit: Optional[int] = None, **kwargs: Any) -> List[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters, limit, **kwargs)
