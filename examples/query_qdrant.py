"""Search what `sgpt-ingest` stored, with qdrant-client alone: an SGPT query vector + a payload filter.

    python examples/query_qdrant.py "how do bees find flowers" --file-name bees.rst

Takes the collection, storage and model like the CLI (--qdrant-url / QDRANT_URL and
QDRANT_API_KEY for a server).
"""

from __future__ import annotations

import os

import click
from qdrant_client import models

from sgpt_qdrant.ingest import store
from sgpt_qdrant import Encoder
from sgpt_qdrant.checkpoint import DEFAULT_MODEL


@click.command()
@click.argument("query")
@click.option("--collection", default=store.DEFAULT_COLLECTION, show_default=True)
@click.option("--qdrant-path", default=store.DEFAULT_PATH, show_default=True)
@click.option("--qdrant-url", envvar="QDRANT_URL", default=None)
@click.option("--prefer-grpc", is_flag=True, help="Talk to the server over gRPC.")
@click.option("--model", envvar="SGPT_MODEL", default=DEFAULT_MODEL, show_default=True)
@click.option("--file-name", default=None, help="Only chunks of this file (a payload filter on file_name).")
@click.option("--limit", default=3, show_default=True)
def main(query, collection, qdrant_path, qdrant_url, prefer_grpc, model, file_name, limit):
    vector = Encoder(model).encode([query])[0].tolist()
    only = None
    if file_name:
        only = models.Filter(must=[models.FieldCondition(key="file_name", match=models.MatchValue(value=file_name))])
    with store.open_client(qdrant_path, qdrant_url, os.environ.get("QDRANT_API_KEY"), prefer_grpc) as client:
        hits = client.query_points(collection, query=vector, using=store.VECTOR_NAME, query_filter=only,
                                   limit=limit, with_payload=True).points
    for hit in hits:
        p = hit.payload
        print(f"{hit.score:.3f}  {p['file_name']} #{p['chunk_index']}  {p['doc_id']}")
        print(f"       {_node_text(p)}")


def _node_text(payload: dict) -> str:
    import json

    return json.loads(payload["_node_content"])["text"]


if __name__ == "__main__":
    main()
