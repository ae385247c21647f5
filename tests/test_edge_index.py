"""sgpt-ingest --index: the HNSW build runs in a child process and reports recall against exact search."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from sgpt_qdrant.ingest.cli import cli
from sgpt_qdrant.ingest.edge import EdgeClient
from sgpt_qdrant.ingest.index import recall_at_k

DOCS = Path(__file__).resolve().parents[1] / "examples" / "docs"


@pytest.mark.slow  # an ingest run and a child process
def test_index_builds_hnsw_in_a_child_and_reports_recall(tmp_path, tiny_model_dir):
    store = tmp_path / "q"
    result = CliRunner().invoke(cli, [str(DOCS), "--model", str(tiny_model_dir), "--qdrant-path", str(store),
                                      "--json", "--index"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    index = record["index"]
    assert index["points"] == record["chunks_written"] > 0
    # every vector is indexed now: the dense one of each point in the HNSW graph, and its BM25 vector
    # (sgpt-ingest's default --sparse bm25), which Edge counts among the indexed vectors too
    assert index["indexed_vectors"] == 2 * index["points"]
    assert 0.0 <= index["recall_at_10"] <= 1.0 and index["samples"] == min(100, index["points"])
    assert "HNSW index built" in result.stderr
    with closing(EdgeClient(store)) as client:  # the parent can open the store again: the child let it go
        info = client.get_collection("documents")
        assert info.indexed_vectors_count == 2 * info.points_count
        recall, n = recall_at_k(client, "documents", samples=20)
        assert n == min(20, info.points_count) and recall == pytest.approx(index["recall_at_10"], abs=0.2)
