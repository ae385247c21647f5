"""Search what `sgpt-ingest` stored through Qdrant's own inference (FastEmbed), no torch at query time.

    sgpt-ingest examples/docs
    sgpt-export-fastembed sgpt-fastembed   # once, with torch: the checkpoint (--model) to ONNX
    python examples/query_fastembed.py "how do bees find flowers" --file-name bees.rst

qdrant-client embeds the query itself: ``query_points(query=models.Document(text=..., model=NAME))``,
computed by FastEmbed on ONNX Runtime from the exported folder. Same options and output as
query_qdrant.py, except that ``--model`` is the exported folder (the checkpoint was needed once,
to build it). Exit status: 0 with hits, 1 when nothing matched, 2 for a setup problem in one line.
"""

from __future__ import annotations

import click

from _query import VECTOR_NAME, fail, file_filter, hit, open_store, print_hits, query_argument, store_options
from sgpt_qdrant.fastembed_register import FastEmbedError, register_fastembed


@click.command()
@query_argument
@store_options
@click.option("--model", envvar="SGPT_FASTEMBED_MODEL", default="sgpt-fastembed", show_default=True,
              help="Folder written by sgpt-export-fastembed (also SGPT_FASTEMBED_MODEL).")
@click.option("--model-name", default=None,
              help="Name to register it under (default: the checkpoint's name recorded in the folder).")
@click.option("--file-name", default=None, help="Only chunks of this file: a bare name, or a path relative to "
              "the folder ingested (or to here); a payload filter.")
@click.option("--limit", default=3, show_default=True)
def main(query, collection, qdrant_path, qdrant_url, prefer_grpc, model, model_name, file_name, limit):
    from qdrant_client import models

    try:
        sgpt = register_fastembed(model, name=model_name)
    except FastEmbedError as exc:
        fail(str(exc))
    document = models.Document(text=query, model=sgpt.name, options=sgpt.options)
    with open_store(qdrant_path, qdrant_url, prefer_grpc, collection, dim=sgpt.dim) as client:
        points = client.query_points(collection, query=document, using=VECTOR_NAME,
                                     query_filter=file_filter(file_name), limit=limit, with_payload=True).points
    print_hits([hit(p.score, p.payload) for p in points], f"collection {collection!r}"
               + (f" (file_name {file_name!r})" if file_name else ""))


if __name__ == "__main__":
    main()
