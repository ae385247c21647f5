"""ingest.search: dense / sparse / hybrid against the client's own raw queries and a hand-computed RRF,
batches equal single queries, filters hold in every mode; the examples' --mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest import IngestOptions, StoreTarget, ingest_paths
from sgpt_qdrant.ingest import search as s  # the module (ingest exports no name "search")
from sgpt_qdrant.ingest.schema import SPARSE_VECTOR_NAME, VECTOR_NAME
from sgpt_qdrant.ingest.sparse import query_vector
from test_examples import _example  # an example script imported as a module

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUERIES = ["why are there two tides a day", "how do bees find flowers", "sourdough starter yeast"]


@pytest.fixture(scope="module")
def client(tiny_encoder, tiny_model_dir):
    client = QdrantClient(":memory:")
    ingest_paths([EXAMPLES / "docs"], store=client, encoder=tiny_encoder, model=str(tiny_model_dir))
    yield client
    client.close()


def _raw(client, query, using, limit=100):
    return client.query_points("documents", query=query, using=using, limit=limit).points


def test_dense_and_sparse_are_the_raw_queries(client, tiny_encoder):
    for text in QUERIES:
        dense = _raw(client, tiny_encoder.encode([text])[0].tolist(), VECTOR_NAME, 5)
        assert [(p.id, p.score) for p in s.search(client, "documents", text, encoder=tiny_encoder, limit=5)] == \
            [(p.id, p.score) for p in dense]
        sparse = _raw(client, query_vector(text), SPARSE_VECTOR_NAME, 5)
        assert sparse, text
        assert [p.id for p in s.search(client, "documents", text, mode="sparse", limit=5)] == [p.id for p in sparse]


def test_hybrid_is_rrf_of_both_lists(client, tiny_encoder):
    """Qdrant's RRF: score(d) = Σ over the prefetch lists of 1 / (2 + rank), rank counted from 0."""
    for text in QUERIES:
        lists = [_raw(client, tiny_encoder.encode([text])[0].tolist(), VECTOR_NAME),
                 _raw(client, query_vector(text), SPARSE_VECTOR_NAME)]
        want: dict = {}
        for points in lists:
            for rank, p in enumerate(points):
                want[p.id] = want.get(p.id, 0.0) + 1 / (2 + rank)
        got = s.search(client, "documents", text, encoder=tiny_encoder, mode="hybrid", limit=10)
        assert len(got) == 10
        for p in got:
            assert p.score == pytest.approx(want[p.id])
        assert [p.score for p in got] == sorted(want.values(), reverse=True)[:10]


@pytest.mark.parametrize("mode", s.MODES)
def test_batch_equals_single_queries_and_filters_hold(client, tiny_encoder, mode):
    flt = models.Filter(must=[models.FieldCondition(key="file_name", match=models.MatchValue(value="tides.html"))])
    batch = s.search_batch(client, "documents", QUERIES, encoder=tiny_encoder, mode=mode, limit=4, query_filter=flt)
    assert len(batch) == len(QUERIES)
    for text, points in zip(QUERIES, batch):
        single = s.search(client, "documents", text, encoder=tiny_encoder, mode=mode, limit=4, query_filter=flt)
        assert [(p.id, p.score) for p in points] == [(p.id, p.score) for p in single]
        assert all(p.payload["file_name"] == "tides.html" for p in points)
    assert s.search_batch(client, "documents", [], encoder=tiny_encoder, mode=mode) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of dense, sparse, hybrid"):
        s.requests(["x"], encoder=None, mode="bm25")
    with pytest.raises(ValueError, match="needs an encoder"):
        s.requests(["x"], encoder=None, mode="hybrid")
    with pytest.raises(ValueError, match="limit must be at least 1"):
        s.requests(["x"], encoder=None, mode="sparse", limit=0)




@pytest.mark.slow
@pytest.mark.parametrize("name", ["query_qdrant", "query_llamaindex"])
def test_example_modes(name, examples_store, tiny_model_dir, tmp_path):
    main = _example(name).main
    runner = CliRunner()
    for mode in s.MODES:
        out = runner.invoke(main, ["two high tides a day", "--qdrant-path", str(examples_store), "--model",
                                   str(tiny_model_dir), "--mode", mode])
        assert out.exit_code == 0, out.output
        assert "tides.html" in out.stdout.splitlines()[0] or mode == "dense"  # BM25 finds the keywords
    dense_only = tmp_path / "store"
    ingest_paths([EXAMPLES / "docs"], store=StoreTarget(dense_only), model=str(tiny_model_dir),
                 options=IngestOptions(sparse="none"))
    out = runner.invoke(main, ["tides", "--qdrant-path", str(dense_only), "--model", str(tiny_model_dir),
                               "--mode", "hybrid"])
    assert out.exit_code == 2 and "has no BM25 vectors" in out.stderr and out.stderr.count("\n") == 1


def test_sparse_example_loads_no_model(examples_store, tmp_path):
    out = CliRunner().invoke(_example("query_qdrant").main, ["waggle dance", "--qdrant-path", str(examples_store),
                                                             "--model", str(tmp_path / "no-model"), "--mode", "sparse"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0].split()[1] == "bees.rst"
