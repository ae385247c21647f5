"""Shared fixtures: a tiny random SGPT checkpoint in the exact Hub layout, built once a session, and a
stand-in Qdrant REST server on 127.0.0.1 (sgpt_qdrant.testing.standin) for the retry, pipelining,
bulk-load and error tests."""

from __future__ import annotations

import os

import pytest

from sgpt_qdrant.testing.standin import StandIn

# Nothing in the tests may reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tests' models are tiny (32 wide): an op takes microseconds, and OpenMP's hand-off between threads
# costs more than the work, the more so on a shared machine (40 texts embedded one by one: 3.2 s with
# 2 threads, 0.25 s with 1, at load 3.8 on 2 cores). One thread for torch (and ONNX Runtime, which
# follows it) in this process and the commands it starts; set before anything imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Random GPT-Neo (2 layers, hidden 32) + 5 GELU Dense + mean pooling, real GPT-2 BPE."""
    from sgpt_qdrant.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("sgpt-tiny") / "model")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from sgpt_qdrant import Encoder

    return Encoder(str(tiny_model_dir), device="cpu")


@pytest.fixture
def standin():
    """A fresh stand-in server per test (its state and fault script are the test's own)."""
    server = StandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def examples_store(tmp_path_factory, tiny_model_dir):
    """examples/docs ingested through the Python pipeline into an embedded store (tiny model)."""
    from pathlib import Path

    from sgpt_qdrant.ingest import StoreTarget, ingest_paths

    path = tmp_path_factory.mktemp("examples") / "qdrant"
    docs = Path(__file__).resolve().parents[1] / "examples" / "docs"
    summary = ingest_paths([str(docs)], store=StoreTarget(str(path)), model=str(tiny_model_dir))
    assert summary.ingested == len(list(docs.iterdir())) and summary.failed == 0
    return path


@pytest.fixture(scope="module")
def isolated_export_cache(tmp_path_factory):
    """SGPT_CACHE_DIR pointed at a fresh folder for one test module (ONNX and FastEmbed exports)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SGPT_CACHE_DIR", str(tmp_path_factory.mktemp("sgpt-cache")))
    yield
    mp.undo()
