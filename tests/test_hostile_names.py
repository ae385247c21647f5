"""Issue 21: a bad --collection on the embedded store (a collection is a folder there) is one line
naming --collection and what is wrong, found before any work, and no folder is made anywhere."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from sgpt_qdrant.ingest import IngestError, StoreTarget, ingest_paths
from sgpt_qdrant.ingest.cli import cli
from sgpt_qdrant.ingest.edge import EdgeClient

BAD = {
    "bad/name": "'/'",
    "..": "'.'",
    "../../escape": "'.'",
    "": "empty",
    " ": "empty",
    "x" * 300: "300 bytes",
    "a\x01b": "'\\x01'",
    "a:b": "':'",
}


def _tree(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("hello world\n")
    return docs


def _folders(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root) for d, names, _ in os.walk(root) for n in names}


@pytest.mark.parametrize("name", list(BAD), ids=[repr(n)[:12] for n in BAD])
def test_cli_bad_collection_on_embedded_store_is_one_line(tmp_path, name, monkeypatch):
    docs = _tree(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # "../../escape" would land beside tmp_path's children
    before = _folders(tmp_path.parent)
    # a model that does not exist: the refusal must come before any model is looked at
    result = CliRunner().invoke(cli, [str(docs), "--qdrant-path", str(work / "store"), "--model",
                                      str(tmp_path / "no-model"), "--collection", name])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    assert "--collection" in lines[0] and BAD[name] in lines[0]
    assert "qdrant-url" not in lines[0] and "no-model" not in lines[0]
    assert _folders(tmp_path.parent) == before  # not even the store folder


def test_api_nul_and_non_text_names_are_refused(tmp_path, tiny_encoder):
    docs = _tree(tmp_path)
    for name in ("a\x00b", 3, "\ud800"):
        with pytest.raises(IngestError, match="--collection"):
            ingest_paths([str(docs)], store=StoreTarget(str(tmp_path / "store")), collection=name, encoder=tiny_encoder)
    assert not (tmp_path / "store").exists()


def test_edge_client_never_makes_a_folder_outside_the_store(tmp_path):
    client = EdgeClient(tmp_path / "store")
    try:
        for name in ("../../outside", "..", "a/../../b", "a\\b", "x" * 241):
            with pytest.raises(ValueError, match="not allowed"):
                client.create_collection(name, vectors_config=None)
            with pytest.raises(ValueError, match="not allowed"):
                client.collection_exists(name)
    finally:
        client.close()
    assert _folders(tmp_path) <= {"store", "store/collections"}


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_server_names_qdrant_client_refuses_hint_collection(tmp_path, standin, tiny_model_dir):
    docs = _tree(tmp_path)
    for name in ("..", ""):
        result = CliRunner().invoke(cli, [str(docs), "--qdrant-url", standin.url, "--model", str(tiny_model_dir),
                                          "--collection", name, "-q"])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "--collection" in lines[0] and "qdrant-url" not in lines[0], result.output
