"""BM25 sparse vectors, computed in-process and offline, the same on the ingest and the query side.

Why: SGPT-125M is a small model; on keyword-heavy questions (names, error codes, identifiers)
lexical matching finds the chunk. The sparse vector is stored beside ``text-dense`` under the name
LlamaIndex's hybrid mode reads (``text-sparse-new``) in a collection whose sparse vector has
Qdrant's **IDF modifier**, so the server (or Qdrant Edge) keeps document frequencies right as
documents are added and removed; nothing corpus-wide is stored in a point.

The encoder is Qdrant Edge's built-in ``Bm25`` (``qdrant_edge.Bm25``, Rust, no model download):

- tokenisation: Qdrant's ``word`` tokenizer (splits on every non-alphanumeric character,
  underscores and dots included: ``ERR_CONNECTION_REFUSED`` → ``err``, ``connection``,
  ``refused``), lowercased, no ASCII folding;
- English stopwords removed, English Snowball stemmer (``running`` → ``run``);
- a token's index is ``abs(murmur3_32(token))``, as FastEmbed's ``Qdrant/bm25`` and the Qdrant
  server's ``qdrant/bm25`` inference compute it;
- document values are BM25's term-frequency part ``tf·(k+1) / (tf + k·(1 − b + b·len/avg_len))``
  with k = 1.2, b = 0.75 and ``avg_len`` = :data:`AVG_LEN` (the mean number of BM25 tokens in a
  75-token chunk); query values are 1.0 per distinct token. With the IDF modifier Qdrant scores
  ``Σ idf(t) · value(t)``: BM25.

A LlamaIndex app that queries such a collection with ``QdrantVectorStore(enable_hybrid=True)``
must pass :func:`llama_sparse_doc_fn` and :func:`llama_sparse_query_fn` (its default is a SPLADE
model from the Hub, whose indices mean something else).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .schema import SPARSE_VECTOR_NAME

if TYPE_CHECKING:
    from qdrant_client import models

    from .collection_config import CollectionLayout

#: The ``--sparse`` choices; "auto" (the CLI's default) is resolved against the collection.
SPARSE_MODES = ("bm25", "none")
DEFAULT_SPARSE = "bm25"
K, B = 1.2, 0.75
#: Mean BM25 tokens (stopwords removed) per 75-token chunk: 20 on this repository's Markdown,
#: about 30 on prose. Qdrant's default, 256, is for whole documents.
AVG_LEN = 25.0
LANGUAGE = "english"
#: Goes into every document's ingest version: change the encoder and stores rewrite.
BM25_VERSION = f"bm25 qdrant_edge word {LANGUAGE} k={K} b={B} avg_len={AVG_LEN}"

_local = threading.local()


class SparseError(ValueError):
    """An unknown ``--sparse`` setting."""


def check_mode(mode: str) -> str:
    if mode not in SPARSE_MODES:
        raise SparseError(f"--sparse must be one of {', '.join(SPARSE_MODES)}, got {mode!r}")
    return mode


def _bm25():
    """One encoder per thread (cheap to build; nothing said about sharing it between threads)."""
    model = getattr(_local, "bm25", None)
    if model is None:
        from qdrant_edge import Bm25, Bm25Config

        model = _local.bm25 = Bm25(Bm25Config(k=K, b=B, avg_len=AVG_LEN, language=LANGUAGE))
    return model


def document_vectors(texts: Sequence[str]) -> list[models.SparseVector]:
    """The stored side: BM25 term-frequency weights per chunk text."""
    from qdrant_client import models

    bm25 = _bm25()
    out = []
    for text in texts:
        v = bm25.embed_document(text)
        out.append(models.SparseVector(indices=list(v.indices), values=list(v.values)))
    return out


def query_vector(text: str) -> models.SparseVector:
    """The query side: 1.0 per distinct token (the IDF modifier supplies the weights)."""
    from qdrant_client import models

    v = _bm25().embed_query(text)
    return models.SparseVector(indices=list(v.indices), values=list(v.values))


def query_vectors(texts: Sequence[str]) -> list[models.SparseVector]:
    return [query_vector(t) for t in texts]


def sparse_params() -> models.SparseVectorParams:
    """The collection's sparse vector: IDF computed by Qdrant over what the collection holds."""
    from qdrant_client import models

    return models.SparseVectorParams(modifier=models.Modifier.IDF)


def has_idf_sparse(layout: CollectionLayout) -> bool | None:
    """True: the collection has our sparse vector with IDF; False: it has none;
    None: it has one under that name without the IDF modifier (BM25 scores would be wrong)."""
    if SPARSE_VECTOR_NAME not in layout.sparse_vectors:
        return False
    return True if layout.sparse_vectors[SPARSE_VECTOR_NAME] == "idf" else None


def resolve_mode(asked: str | None, layout: CollectionLayout | None, name: str, where: str) -> str:
    """The ``--sparse`` setting of this run: ``asked``, or (None) bm25 for a new collection and
    what an existing one was made with. Asking bm25 of a collection made without it is refused:
    a sparse vector cannot be added to an existing collection on every store."""
    if asked is not None:
        check_mode(asked)
    if layout is None:
        return asked or DEFAULT_SPARSE
    has = has_idf_sparse(layout)
    if has is None and asked != "none":
        raise SparseError(f"collection {name!r} at {where} has a sparse vector {SPARSE_VECTOR_NAME!r} without "
                          "Qdrant's IDF modifier, so BM25 scores would be wrong: use another --collection, or "
                          "--sparse none")
    if asked is None:
        return "bm25" if has else "none"
    if asked == "bm25" and not has:
        raise SparseError(f"collection {name!r} at {where} was made without sparse vectors ({SPARSE_VECTOR_NAME!r}), "
                          "so --sparse bm25 cannot write them: use a new --collection (or delete this one; everything "
                          "is embedded again), or --sparse none")
    return asked


def llama_sparse_doc_fn(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
    """``sparse_doc_fn`` for LlamaIndex's ``QdrantVectorStore``: the vectors sgpt-ingest stores."""
    vectors = document_vectors(texts)
    return [v.indices for v in vectors], [v.values for v in vectors]


def llama_sparse_query_fn(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
    """``sparse_query_fn`` for LlamaIndex's ``QdrantVectorStore``: the query side of the same BM25."""
    vectors = query_vectors(texts)
    return [v.indices for v in vectors], [v.values for v in vectors]
