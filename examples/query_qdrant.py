"""Search what `sgpt-ingest` stored, with qdrant-client alone: an SGPT query vector + a payload filter.

    sgpt-ingest examples/docs
    python examples/query_qdrant.py "how do bees find flowers" --file-name bees.rst

Takes the collection, storage and model like the CLI (--qdrant-url / QDRANT_URL and
QDRANT_API_KEY for a server). Exit status: 0 with hits, 1 when nothing matched, 2 for a
setup problem (model, store, collection), named in one line.
"""

from __future__ import annotations

import click

from _query import VECTOR_NAME, fail, file_filter, hit, open_store, print_hits, query_argument, store_options
from sgpt_qdrant.checkpoint import DEFAULT_MODEL, CheckpointError


@click.command()
@query_argument
@store_options
@click.option("--model", envvar="SGPT_MODEL", default=DEFAULT_MODEL, show_default=True,
              help="The checkpoint sgpt-ingest used: Hub id or local folder (also SGPT_MODEL).")
@click.option("--file-name", default=None, help="Only chunks of this file: a bare name, or a path relative to "
              "the folder ingested (or to here); a payload filter.")
@click.option("--limit", default=3, show_default=True)
def main(query, collection, qdrant_path, qdrant_url, prefer_grpc, model, file_name, limit):
    from sgpt_qdrant import Encoder

    try:
        encoder = Encoder(model)
    except CheckpointError as exc:
        fail(str(exc))
    with open_store(qdrant_path, qdrant_url, prefer_grpc, collection, dim=encoder.dimension) as client:
        vector = encoder.encode([query])[0].tolist()
        points = client.query_points(collection, query=vector, using=VECTOR_NAME, query_filter=file_filter(file_name),
                                     limit=limit, with_payload=True).points
    print_hits([hit(p.score, p.payload) for p in points], f"collection {collection!r}"
               + (f" (file_name {file_name!r})" if file_name else ""))


if __name__ == "__main__":
    main()
