"""N partitioned workers fill one embedded collection through ingest.sync + Uploader; --prune
with a partition only removes the worker's own share of deleted files."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pytest
from qdrant_client import QdrantClient

sync_mod = pytest.importorskip("sgpt_qdrant.ingest.sync")
from sgpt_qdrant.ingest import store  # noqa: E402
from sgpt_qdrant.ingest.collection_config import ensure_collection  # noqa: E402
from sgpt_qdrant.ingest.partition import owns, parse_partition, share_of  # noqa: E402
from sgpt_qdrant.ingest.read import find_files  # noqa: E402
from sgpt_qdrant.ingest.upload import Uploader  # noqa: E402
from sgpt_qdrant.testing import gpt2_tokenizer  # noqa: E402

DIM = 8
N = 3


def _encode(texts: list[str]) -> np.ndarray:
    rng = np.random.default_rng(len(texts))
    return rng.standard_normal((len(texts), DIM)).astype(np.float32)


def _worker(client, root, number, tokenizer, prune):
    part = parse_partition(f"{number}/{N}")
    files = [f for f in find_files([root]) if owns(part, f.doc_id)]
    state = {d: s for d, s in store.read_state(client, "docs").items() if owns(part, d)}
    with Uploader(client, "docs", barrier_deletes=False) as writer:
        return sync_mod.sync(files, state, tokenizer=tokenizer, max_tokens=75, model="test", encode=_encode,
                             writer=writer, batch_size=16, prune=prune, on_message=lambda m: None)


def _stored_docs(client) -> set[str]:
    return set(store.read_state(client, "docs"))


def test_partitioned_workers_fill_one_collection_and_prune_only_their_share(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    names = [f"note-{i:02d}.txt" for i in range(15)]
    for i, name in enumerate(names):
        (root / name).write_text(f"Note {i}. " + "The quick brown fox jumps over the lazy dog. " * (1 + i % 4))
    tokenizer = gpt2_tokenizer()
    with closing(QdrantClient(path=str(tmp_path / "store"))) as client:
        ensure_collection(client, "docs", DIM, vector_name=store.VECTOR_NAME)
        for number in range(1, N + 1):
            _worker(client, root, number, tokenizer, prune=True)
        assert _stored_docs(client) == set(names)  # together: every document, each once
        # one deleted file in each of two different shares
        by_share: dict[int, list[str]] = {}
        for name in names:
            by_share.setdefault(share_of(name, N), []).append(name)
        first, second = sorted(by_share)[:2]
        gone_a, gone_b = by_share[first][0], by_share[second][0]
        (root / gone_a).unlink()
        (root / gone_b).unlink()
        summary = _worker(client, root, first, tokenizer, prune=True)
        assert summary.documents_deleted == 1
        assert _stored_docs(client) == set(names) - {gone_a}  # the other share's deleted file stays
        _worker(client, root, second, tokenizer, prune=True)
        assert _stored_docs(client) == set(names) - {gone_a, gone_b}
        # a re-run of every worker changes nothing
        for number in range(1, N + 1):
            summary = _worker(client, root, number, tokenizer, prune=True)
            assert summary.chunks_written == 0 and summary.documents_deleted == 0
