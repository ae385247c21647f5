"""The FastEmbed export: FastEmbed's vectors equal Encoder's fp32 ones, and Qdrant's own inference
(``models.Document``) finds what the torch path finds, without importing torch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sgpt_qdrant.ingest.edge import EdgeClient
from sgpt_qdrant.fastembed_export import STRIP_PATTERN, export_fastembed
from sgpt_qdrant.fastembed_register import FastEmbedError, register_fastembed, registered
from sgpt_qdrant.testing import random_checkpoint
from texts import EXPECTED_WARNINGS, varied_texts

fastembed = pytest.importorskip("fastembed", reason="needs the fastembed extra: pip install -e '.[fastembed]'")

ROOT = Path(__file__).resolve().parents[1]
#: Parity texts: the shared varied ones (over-long, whitespace, non-ASCII, emoji, near-empty) plus
#: whitespace-only and a C0 separator Python's strip() removes but Unicode does not call space.
TEXTS = varied_texts() + ["   ", "\x1c\u3000 pad \u2009\x1f", "."]
#: Texts with nothing left after stripping: the one place the two paths differ on purpose. The
#: reference (and FastEmbed) mean-pools zero tokens into a zero vector; Encoder embeds the lone
#: end-of-text token instead and warns (a zero vector makes cosine similarity NaN).
EMPTY = [i for i, t in enumerate(TEXTS) if not t.strip()]


#: Exports (ONNX, FastEmbed) go to a cache of this module's own, not ~/.cache.
pytestmark = [pytest.mark.usefixtures("isolated_export_cache"), *EXPECTED_WARNINGS]  # TEXTS cut on purpose


@pytest.fixture(scope="module")
def folder(tiny_model_dir, tmp_path_factory) -> Path:
    return export_fastembed(str(tiny_model_dir), tmp_path_factory.mktemp("export") / "sgpt-fastembed")


@pytest.fixture(scope="module")
def text_embedding(folder):
    return register_fastembed(folder, name="test/sgpt-tiny").text_embedding()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_strip_normaliser_removes_exactly_what_python_strip_removes():
    from tokenizers import Regex, normalizers

    strip = normalizers.Replace(Regex(STRIP_PATTERN), "")
    for code in range(0x3100):  # every Unicode and Python space is below U+3100
        if 0xD800 <= code < 0xE000:
            continue
        c = chr(code)
        text = f"{c}{c}a{c}b\n c{c}"
        assert strip.normalize_str(text) == text.strip(), hex(code)


def test_folder_tokenises_as_the_reference(folder, text_embedding, tiny_encoder):
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert tokenizer_config["model_max_length"] == 75 and tokenizer_config["pad_token"] == "<|endoftext|>"
    assert config["pad_token_id"] == 50256
    tokenizer = text_embedding.model.tokenizer  # as FastEmbed loaded and configured it
    hello, long, pad = tokenizer.encode_batch(["  Hello world\n", "word " * 120, "x"])
    assert hello.ids[:2] == [15496, 995] and sum(hello.attention_mask) == 2  # stripped, no BOS/EOS
    assert len(long.ids) == 75  # truncated at max_seq_length, the batch padded to it
    assert pad.ids[1:] == [50256] * 74 and pad.attention_mask == [1] + [0] * 74  # right padding
    expected = tiny_encoder.tokenize(TEXTS)
    for i, (text, enc, ref) in enumerate(zip(TEXTS, tokenizer.encode_batch(TEXTS), expected)):
        kept = [t for t, m in zip(enc.ids, enc.attention_mask) if m]
        assert kept == ([] if i in EMPTY else ref), repr(text)


def test_vectors_equal_encoder_fp32(text_embedding, tiny_encoder):
    assert tiny_encoder.mode == "fp32"  # the CPU default
    reference = tiny_encoder.encode(TEXTS)
    in_one_batch = np.stack(list(text_embedding.embed(TEXTS, batch_size=len(TEXTS))))
    one_by_one = np.stack([next(iter(text_embedding.embed([t]))) for t in TEXTS])
    for got in (in_one_batch, one_by_one):
        assert got.shape == reference.shape and np.issubdtype(got.dtype, np.floating)
        real = np.ones(len(TEXTS), dtype=bool)
        real[EMPTY] = False
        assert EMPTY and np.all(got[~real] == 0)  # the reference's zero vector for an empty text
        assert np.abs(got[real] - reference[real]).max() <= 1e-4
        assert _cosine(got[real], reference[real]).min() >= 1 - 1e-6


@pytest.mark.slow  # a second export
def test_export_is_cached_by_weights(tiny_model_dir, tmp_path):
    first = export_fastembed(str(tiny_model_dir))
    stamp = (first / "model.onnx").stat().st_mtime_ns
    assert export_fastembed(str(tiny_model_dir)) == first and (first / "model.onnx").stat().st_mtime_ns == stamp
    other = export_fastembed(random_checkpoint(seed=1))
    assert other != first and other.parent == first.parent
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".tmp-")]  # no half-written folder left
    out = export_fastembed(str(tiny_model_dir), tmp_path / "copy")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in first.iterdir())
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FastEmbedError, match="not an SGPT FastEmbed export"):
        export_fastembed(str(tiny_model_dir), tmp_path / "busy")


@pytest.mark.parametrize("change,named", [
    (dict(pooling="weightedmean"), "weightedmean pooling"),
    (dict(pooling="lasttoken"), "lasttoken pooling"),
    (dict(dense_before_pooling=False), "Dense layer after pooling"),
    ("normalize", "Normalize module"),
])
def test_unrepresentable_checkpoints_are_refused_in_one_line(change, named):
    if change == "normalize":
        checkpoint = dataclasses.replace(random_checkpoint(), normalize=True)
    else:
        checkpoint = random_checkpoint(**change)
    with pytest.raises(FastEmbedError) as info:
        export_fastembed(checkpoint)
    message = str(info.value)
    assert named in message and "Encoder" in message and "\n" not in message


def test_missing_export_and_unknown_name_are_one_line(tmp_path, folder):
    with pytest.raises(FastEmbedError, match="no SGPT FastEmbed export here.*sgpt-export-fastembed"):
        register_fastembed(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.onnx").write_bytes(b"")
    with pytest.raises(FastEmbedError, match="missing sgpt_fastembed.json, tokenizer.json"):
        register_fastembed(tmp_path / "half")
    with pytest.raises(FastEmbedError, match="no SGPT export registered under this name"):
        registered("nobody/none")
    with pytest.raises(FastEmbedError, match="FastEmbed already has a model of this name"):
        register_fastembed(folder, name="BAAI/bge-small-en-v1.5")
    assert registered("TEST/sgpt-tiny").dim == 32  # FastEmbed matches names case-insensitively


def test_cli_refuses_a_bad_model_in_one_line(tmp_path):
    from sgpt_qdrant.fastembed_cli import main

    result = CliRunner().invoke(main, [str(tmp_path / "out"), "--model", str(tmp_path / "no-model")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and "no-model" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_qdrant_inference_finds_what_the_torch_path_finds(folder, tiny_model_dir, examples_store):
    """A collection filled by sgpt-ingest, queried by models.Document in local mode: same hits, same order."""
    from qdrant_client import QdrantClient, models

    from sgpt_qdrant import Encoder
    from sgpt_qdrant.ingest.schema import DEFAULT_COLLECTION, VECTOR_NAME

    sgpt = register_fastembed(folder)
    encoder = Encoder(str(tiny_model_dir), device="cpu", dtype="fp32")
    queries = ["how do bees find flowers", "  why are there two tides a day?  ", "Sauerteig 🍞 ohne Hefe",
               "lighthouse " * 40]
    client = EdgeClient(examples_store)
    try:
        for query in queries:
            by_torch = client.query_points(DEFAULT_COLLECTION, query=encoder.encode([query])[0].tolist(),
                                           using=VECTOR_NAME, limit=5).points
            by_qdrant = client.query_points(DEFAULT_COLLECTION, using=VECTOR_NAME, limit=5, query=models.Document(
                text=query, model=sgpt.name, options=sgpt.options)).points
            assert [p.id for p in by_qdrant] == [p.id for p in by_torch], query
            assert np.allclose([p.score for p in by_qdrant], [p.score for p in by_torch], atol=1e-6)
    finally:
        client.close()


@pytest.mark.slow
def test_query_example_never_imports_torch(folder, examples_store):
    """examples/query_fastembed.py run in a fresh interpreter: hits printed, torch never imported."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['query_fastembed.py', 'how do bees find flowers', '--model', {str(folder)!r}, "
        f"'--qdrant-path', {str(examples_store)!r}, '--file-name', 'bees.rst', '--limit', '2']\n"
        f"sys.path.insert(0, {str(ROOT / 'examples')!r})\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'examples' / 'query_fastembed.py')!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('torch imported:', 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {**os.environ, "SGPT_CACHE_DIR": os.environ["SGPT_CACHE_DIR"]}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "bees.rst #" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "torch imported: False False"
