"""Deterministic document partitions for N ingest workers filling one collection.

`--partition K/N` (1-based, like GNU `split -n l/K/N`) keeps the documents whose id hashes to
share K of N. The hash is SHA-1 of the UTF-8 document id (never Python's salted `hash()`), so
every process on every machine computes the same shares; the share of a document is picked by
jump consistent hashing (Lamping & Veach 2014), so growing N to N+1 moves only about 1/(N+1) of
the documents (all to the new share) instead of reshuffling everything.

Every worker must see the same document ids (the same tree, ids relative to the same root):
the shares are disjoint and cover every id only when the ids agree.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from .schema import doc_key

__all__ = ["Partition", "PartitionError", "parse_partition", "in_partition", "share_of", "owns"]

_MASK64 = (1 << 64) - 1


class PartitionError(ValueError):
    """A `--partition` value that is not K/N with 1 <= K <= N."""


class Partition(NamedTuple):
    """Share `number` (1-based) of `count`."""

    number: int
    count: int

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and in_partition(doc_id, self.number, self.count)

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"


_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_partition(spec: str) -> Partition:
    """Parse "K/N" (1 <= K <= N, 1-based) into a Partition; a clear PartitionError otherwise."""
    match = _SPEC.fullmatch(spec or "")
    if not match:
        raise PartitionError(f"--partition {spec!r}: expected K/N, e.g. 1/4 (shares are numbered 1..N)")
    number, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise PartitionError(f"--partition {spec!r}: N must be at least 1")
    if not 1 <= number <= count:
        raise PartitionError(f"--partition {spec!r}: K must be between 1 and {count} (shares are numbered 1..N)")
    return Partition(number, count)


def _key(doc_id: str) -> int:
    # the stored form of the id: a name that is not UTF-8 hashes the same as a file and as a stored id
    return int.from_bytes(hashlib.sha1(doc_key(doc_id).encode("utf-8")).digest()[:8], "big")


def _jump(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket in [0, buckets) of a 64-bit key, as in the paper."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def share_of(doc_id: str, count: int) -> int:
    """The 1-based share (1..count) that `doc_id` belongs to."""
    if count < 1:
        raise PartitionError(f"partition count must be at least 1, got {count}")
    return _jump(_key(doc_id), count) + 1


def in_partition(doc_id: str, number: int, count: int) -> bool:
    """True when `doc_id` belongs to share `number` (1-based) of `count`."""
    if not 1 <= number <= count:
        raise PartitionError(f"partition {number}/{count}: K must be between 1 and N")
    return share_of(doc_id, count) == number


def owns(partition: Partition | None, doc_id: str) -> bool:
    """True when a worker with `partition` (None: no --partition, everything) handles `doc_id`.

    Filter both the files to ingest and the stored state by it: `--prune` then only sees, and
    only deletes, the worker's own share.
    """
    return partition is None or in_partition(doc_id, partition.number, partition.count)
