"""Query what `sgpt-ingest` stored through LlamaIndex: QdrantVectorStore → VectorStoreIndex → retriever.

    python examples/query_llamaindex.py "why are there two tides a day"

Takes the collection, storage and model like the CLI (--qdrant-url / QDRANT_URL and
QDRANT_API_KEY for a server). Prints each source with its score.
"""

from __future__ import annotations

import os

import click
from llama_index.core import VectorStoreIndex
from llama_index.vector_stores.qdrant import QdrantVectorStore

from sgpt_qdrant.ingest import store
from sgpt_qdrant import SGPTEmbedding
from sgpt_qdrant.checkpoint import DEFAULT_MODEL


@click.command()
@click.argument("query")
@click.option("--collection", default=store.DEFAULT_COLLECTION, show_default=True)
@click.option("--qdrant-path", default=store.DEFAULT_PATH, show_default=True)
@click.option("--qdrant-url", envvar="QDRANT_URL", default=None)
@click.option("--prefer-grpc", is_flag=True, help="Talk to the server over gRPC.")
@click.option("--model", envvar="SGPT_MODEL", default=DEFAULT_MODEL, show_default=True)
@click.option("--top-k", default=3, show_default=True)
def main(query, collection, qdrant_path, qdrant_url, prefer_grpc, model, top_k):
    embed_model = SGPTEmbedding(model_name=model)
    with store.open_client(qdrant_path, qdrant_url, os.environ.get("QDRANT_API_KEY"), prefer_grpc) as client:
        vector_store = QdrantVectorStore(client=client, collection_name=collection)
        index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
        for source in index.as_retriever(similarity_top_k=top_k).retrieve(query):
            node = source.node
            print(f"{source.score:.3f}  {node.metadata['file_name']} #{node.metadata['chunk_index']}  "
                  f"(document {node.ref_doc_id})")
            print(f"       {node.get_content()}")


if __name__ == "__main__":
    main()
