"""After the writes: is what the run says it wrote in the store?

A server (or a proxy in front of it) that acknowledges writes and drops them would otherwise go
unnoticed: the run reports chunks written and exits 0. :class:`Recording` wraps the writer and
notes, per document, the point ids upserted; :func:`check` then counts the stored points of a
sample of those documents (one filtered count) and retrieves a sample of the ids. Both samples
are bounded, so the check costs two requests whatever the size of the run.
"""

from __future__ import annotations

from . import schema
from .upload import UploadError

#: Documents counted and point ids retrieved after a run (spread over what was written).
SAMPLE_DOCS, SAMPLE_IDS = 256, 64


class WriteCheckError(UploadError):
    """The store does not hold what the run wrote: one line, says what is missing."""


class Recording:
    """A writer that passes everything on and remembers the ids upserted per document."""

    def __init__(self, writer) -> None:
        self.writer = writer
        self.written: dict[str, set[str]] = {}

    def upsert(self, points) -> None:
        self.writer.upsert(points)
        for p in points:
            key = (p.payload or {}).get(schema.DOC_ID_FIELD)
            self.written.setdefault(str(key), set()).add(str(p.id))

    def delete(self, selector) -> None:
        self.writer.delete(selector)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        (getattr(self.writer, "abort", None) or self.writer.close)()


def _spread(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def check(client, collection: str, written: dict[str, set[str]], where: str) -> None:
    """Raise :class:`WriteCheckError` when a sample of ``written`` is not stored as written."""
    if not written:  # an unchanged re-run: nothing to check, and no qdrant-client import for it
        return
    from qdrant_client import models

    docs = _spread(sorted(written), SAMPLE_DOCS)
    expected = sum(len(written[d]) for d in docs)
    flt = models.Filter(must=[models.FieldCondition(key=schema.DOC_ID_FIELD, match=models.MatchAny(any=docs))])
    stored = client.count(collection, count_filter=flt, exact=True).count
    ids = _spread(sorted(i for d in docs for i in written[d]), SAMPLE_IDS)
    found = {str(r.id) for r in client.retrieve(collection, ids=ids, with_payload=False, with_vectors=False)}
    missing = [i for i in ids if i not in found]
    if stored != expected or missing:
        raise WriteCheckError(
            f"{where} acknowledged the writes but does not hold them: {len(docs)} documents written with "
            f"{expected} chunks have {stored} stored, {len(missing)} of {len(ids)} sampled point ids are "
            "missing; check the server (disk, replication, a proxy) and run the same command again")
