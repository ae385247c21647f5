"""What the query examples share: the store options, one-line errors, one output format.

The store is ingest's :class:`StoreTarget` (its options are ``sgpt-ingest``'s, from
``ingest.cli_options``; the API key from QDRANT_API_KEY, stripped and checked as the CLI does): the
embedded Qdrant Edge store (``ingest.edge.EdgeClient``, the same ``QdrantClient`` API) by default, a
server with ``--qdrant-url``; the examples' code is the same for both.

Not an example itself; ``python examples/query_*.py`` finds it next to them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import NoReturn

import click

# The ingest's names for the store (its options, target and schema), in one place.
from sgpt_qdrant.ingest import cli_options
from sgpt_qdrant.ingest.client import StoreError, StoreTarget
from sgpt_qdrant.ingest.schema import DEFAULT_COLLECTION, VECTOR_NAME

# An unreachable server is reported by open_store in one line; qdrant-client would also warn about
# its version check, from a background thread, so the filter is process-wide (these are scripts).
warnings.filterwarnings("ignore", message="Failed to obtain server version")

__all__ = ["VECTOR_NAME", "fail", "query_argument", "file_filter", "hit", "mode_option", "open_store", "print_hits",
           "require_sparse", "store_options"]


def _non_empty(ctx, param, value: str) -> str:
    if not value.strip():  # no token to embed: the reference's vector would be all zeros
        raise click.BadParameter("the query is empty", ctx=ctx, param=param)
    return value


#: The query text, refused when empty (the same rule for every example).
query_argument = click.argument("query", callback=_non_empty)


def store_options(command):
    """--collection, --qdrant-path, --qdrant-url, --prefer-grpc: sgpt-ingest's own options."""
    command = cli_options.store_options(
        path_help="Embedded store folder (Qdrant Edge) written by sgpt-ingest, when no URL is given; "
                  "one process at a time: while sgpt-ingest writes it, wait or use a server.",
        url_help="A Qdrant server (also QDRANT_URL; the API key from QDRANT_API_KEY).", timeout=False)(command)
    return click.option("--collection", default=DEFAULT_COLLECTION, show_default=True)(command)


#: --mode: SGPT vectors, BM25 (what `sgpt-ingest --sparse bm25`, the default, stores), or both fused by RRF in Qdrant.
mode_option = click.option("--mode", type=click.Choice(["dense", "sparse", "hybrid"]), default="dense",
                           show_default=True, help="dense: SGPT; sparse: BM25 keywords; hybrid: both, RRF-fused "
                           "in Qdrant.")


def require_sparse(client, collection: str, mode: str) -> None:
    """Sparse and hybrid need the BM25 vectors: a collection made without them is one line, exit 2."""
    from sgpt_qdrant.ingest.search import collection_has_sparse

    if mode != "dense" and not collection_has_sparse(client, collection):
        fail(f"collection {collection!r} has no BM25 vectors, so --mode {mode} cannot run: ingest into a new "
             "collection with `sgpt-ingest --sparse bm25`, or use --mode dense")


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2, as sgpt-ingest does for a setup problem."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def open_store(qdrant_path: str, qdrant_url: str | None, prefer_grpc: bool, collection: str,
               dim: int | None = None) -> Iterator:
    """A client on a store that holds ``collection`` (of ``dim``); anything else is one line, exit 2."""
    try:
        target = cli_options.store_target(qdrant_path, qdrant_url, prefer_grpc)
    except StoreError as exc:
        fail(str(exc))
    with _client(target) as client:
        if client is None:
            fail(f"{target.folder}: no Qdrant store here; fill it first, e.g. `sgpt-ingest examples/docs`")
        try:
            exists = client.collection_exists(collection)
        except Exception as exc:  # connection refused, timeout, TLS, auth: say where, not a traceback
            fail(f"cannot query Qdrant at {target.where()} ({type(exc).__name__}); "
                 "check that the server is up, --qdrant-url / QDRANT_URL and QDRANT_API_KEY")
        if not exists:
            fail(f"collection {collection!r} does not exist in {target.where()}; "
                 "fill it first with sgpt-ingest (same --collection)")
        if dim is not None:
            vectors = client.get_collection(collection).config.params.vectors
            stored = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
            if stored is None or stored.size != dim:
                fail(f"collection {collection!r} holds {VECTOR_NAME!r} vectors of dimension "
                     f"{stored.size if stored else 'none'}, the model makes {dim}: query it with the model "
                     "sgpt-ingest used")
        yield client


@contextlib.contextmanager
def _client(target: StoreTarget) -> Iterator:
    """ingest's client, never creating a store; a store in use by another process is one line."""
    try:
        with target.open(create=False) as client:
            yield client
    except StoreError as exc:
        fail(str(exc))


def file_filter(file_name: str | None):
    """A payload filter on what sgpt-ingest stores, or None: a bare name matches ``file_name``; a
    path matches the document id (relative to the folder ingested) or the file's absolute path."""
    if not file_name:
        return None
    from qdrant_client import models

    def equals(key: str, value: str):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    if os.path.basename(file_name) == file_name:
        return models.Filter(must=[equals("file_name", file_name)])
    return models.Filter(should=[equals("doc_id", file_name), equals("file_path", os.path.abspath(file_name))])


def hit(score: float, payload: dict) -> tuple[float, str, int, str, str]:
    """A printable hit from a point's payload (the layout sgpt-ingest writes)."""
    text = json.loads(payload["_node_content"])["text"]  # the LlamaIndex node stored with the point
    return score, payload["file_name"], payload["chunk_index"], payload["doc_id"], text


def print_hits(hits: list[tuple[float, str, int, str, str]], where: str) -> None:
    """``score  file #chunk  document`` then the chunk's text; nothing found: a message, exit 1.

    Scores get six decimals: close matches differ in the fourth or fifth (and the random
    stand-in model's scores are all near 1 and mean nothing).
    """
    if not hits:
        click.echo(f"no match: {where} holds no chunk for this query", err=True)
        sys.exit(1)
    for score, file_name, chunk_index, doc_id, text in hits:
        print(f"{score:.6f}  {file_name} #{chunk_index}  {doc_id}")
        print(textwrap.indent(text, " " * 10))
