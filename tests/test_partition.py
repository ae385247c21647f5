"""Partitions: disjoint, covering, stable across processes, jump-hash reference values."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sgpt_qdrant.ingest.partition import Partition, PartitionError, _jump, in_partition, parse_partition, share_of

ROOT = Path(__file__).resolve().parents[1]
IDS = [f"docs/section-{i // 100}/file-{i}.md" for i in range(5000)] + ["", "ünïcode/文档.txt", "a b"]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_shares_are_disjoint_and_cover_every_document(count):
    owners = {doc: [k for k in range(1, count + 1) if in_partition(doc, k, count)] for doc in IDS}
    assert all(len(ks) == 1 for ks in owners.values())  # each id in exactly one share
    sizes = Counter(ks[0] for ks in owners.values())
    assert set(sizes) == set(range(1, count + 1))
    expected = len(IDS) / count  # roughly balanced: within 5 standard deviations of a binomial
    assert all(abs(n - expected) < 5 * (expected * (1 - 1 / count)) ** 0.5 + 1 for n in sizes.values())


def test_jump_hash_matches_published_reference_values():
    # Guava's Hashing.consistentHash golden values (the same algorithm, Lamping & Veach 2014)
    golden100 = [0, 55, 62, 8, 45, 59, 86, 97, 82, 59, 73, 37, 17, 56, 86, 21, 90, 37, 38, 83]
    assert [_jump(i, 100) for i in range(20)] == golden100
    assert _jump(10863919174838991, 11) == 6
    assert _jump(2016238256797177309, 11) == 3
    assert _jump(1673758223894951030, 11) == 5
    assert _jump(2, 100001) == 80343 and _jump(2201, 100001) == 22152 and _jump(2202, 100001) == 15018


def test_share_is_the_jump_hash_of_the_sha1_prefix():
    doc = "docs/readme.md"
    key = int(hashlib.sha1(doc.encode()).hexdigest()[:16], 16)
    assert share_of(doc, 9) == _jump(key, 9) + 1


def test_growing_n_moves_only_documents_to_the_new_share():
    before = {doc: share_of(doc, 4) for doc in IDS}
    after = {doc: share_of(doc, 5) for doc in IDS}
    moved = [doc for doc in IDS if before[doc] != after[doc]]
    assert all(after[doc] == 5 for doc in moved)
    assert 0.15 < len(moved) / len(IDS) < 0.25  # about 1/5


@pytest.mark.slow
def test_stable_across_processes_with_different_hash_seeds():
    code = (
        "import json,sys; from sgpt_qdrant.ingest.partition import share_of; "
        "ids=json.load(sys.stdin); print(json.dumps([share_of(i, 7) for i in ids]))"
    )
    here = [share_of(doc, 7) for doc in IDS[:500]]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(IDS[:500]), capture_output=True, text=True,
            cwd=ROOT, env=env, timeout=60, check=True,
        )
        assert json.loads(out.stdout) == here


@pytest.mark.parametrize("spec, expected", [("1/4", (1, 4)), ("4/4", (4, 4)), (" 2 / 3 ", (2, 3)), ("1/1", (1, 1))])
def test_parse(spec, expected):
    assert parse_partition(spec) == Partition(*expected)


@pytest.mark.parametrize("spec", ["0/4", "5/4", "1/0", "-1/4", "1", "a/b", "", "1/4/2", "1.5/4"])
def test_parse_rejects_bad_specs_with_a_clear_message(spec):
    with pytest.raises(PartitionError, match="--partition"):
        parse_partition(spec)


def test_partition_membership():
    part = parse_partition("2/3")
    assert str(part) == "2/3"
    assert [doc in part for doc in IDS[:50]] == [share_of(doc, 3) == 2 for doc in IDS[:50]]
    with pytest.raises(PartitionError):
        in_partition("x", 0, 3)
