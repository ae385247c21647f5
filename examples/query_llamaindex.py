"""Query what `sgpt-ingest` stored through LlamaIndex: QdrantVectorStore → VectorStoreIndex → retriever.

    sgpt-ingest examples/docs
    python examples/query_llamaindex.py "why are there two tides a day"

On the embedded store the client is an ``EdgeClient``, which ``QdrantVectorStore`` takes as it is
(``sgpt_qdrant.EdgeVectorStore.open(path)`` is the same store with its own constructor).
Takes the collection, storage and model like the CLI (--qdrant-url / QDRANT_URL and
QDRANT_API_KEY for a server). Prints each source with its score; exit status as
query_qdrant.py (0 hits, 1 nothing matched, 2 setup problem in one line).
"""

from __future__ import annotations

import click

from _query import fail, open_store, print_hits, query_argument, store_options
from sgpt_qdrant.checkpoint import DEFAULT_MODEL, CheckpointError


@click.command()
@query_argument
@store_options
@click.option("--model", envvar="SGPT_MODEL", default=DEFAULT_MODEL, show_default=True,
              help="The checkpoint sgpt-ingest used: Hub id or local folder (also SGPT_MODEL).")
@click.option("--top-k", default=3, show_default=True)
def main(query, collection, qdrant_path, qdrant_url, prefer_grpc, model, top_k):
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from sgpt_qdrant import SGPTEmbedding

    try:
        embed_model = SGPTEmbedding(model_name=model)
    except CheckpointError as exc:
        fail(str(exc))
    with open_store(qdrant_path, qdrant_url, prefer_grpc, collection, dim=embed_model.dimension) as client:
        vector_store = QdrantVectorStore(client=client, collection_name=collection)
        index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
        sources = index.as_retriever(similarity_top_k=top_k).retrieve(query)
    print_hits([(s.score, s.node.metadata["file_name"], s.node.metadata["chunk_index"], s.node.ref_doc_id,
                 s.node.get_content()) for s in sources], f"collection {collection!r}")


if __name__ == "__main__":
    main()
