"""Shared fixtures: a tiny random SGPT checkpoint in the exact Hub layout, built once a session."""

from __future__ import annotations

import os

import pytest

# Nothing in the tests may reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Random GPT-Neo (2 layers, hidden 32) + 5 GELU Dense + mean pooling, real GPT-2 BPE."""
    from sgpt_qdrant.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("sgpt-tiny") / "model")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    from sgpt_qdrant import Encoder

    return Encoder(str(tiny_model_dir), device="cpu")
