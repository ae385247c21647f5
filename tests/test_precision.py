"""Precision modes and execution paths: each one against an independent reference.

fp32 (every backend) must equal transformers' own GPTNeoModel plus the Dense stack and mean
pooling written by hand, to 1e-5. bf16 and int8 must keep cosine >= 0.999 to that reference.
Every mode must be batch invariant: fp32 to float rounding, bf16/int8 by cosine (see LOSSY_BATCH_COS).
"""

from __future__ import annotations

import logging
import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from texts import EXPECTED_WARNINGS, varied_texts

from sgpt_qdrant import Encoder, load_checkpoint
from sgpt_qdrant import precision
from sgpt_qdrant.engine import pick_devices
from sgpt_qdrant.tokens import pad, plan_batches
from sgpt_qdrant.runtime import onednn, ort

HAS_ORT = ort.available()
NATIVE_BF16 = onednn.available(torch.bfloat16)

# (mode, backend) pairs runnable on this CPU.
PATHS = [
    ("fp32", "eager"),
    ("fp32", "onednn"),
    pytest.param("fp32", "onnx", marks=pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")),
    ("bf16", "eager"),  # any CPU: emulated (slow, warned) where bf16 is not native
    pytest.param("bf16", "onednn", marks=pytest.mark.skipif(
        not NATIVE_BF16, reason="oneDNN bf16 needs native bf16 (AVX512-BF16 or AMX); this CPU has none")),
    pytest.param("int8", "onnx", marks=pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")),
]

# Batch invariance. fp32: max |alone - in a batch| relative to the vector's largest entry, float
# rounding only (another matmul blocking for another shape); seen 3e-7 on AVX-512 and AVX2.
FP32_BATCH_TOL = 2e-6
# bf16 and int8 are judged as the runtime's own probe judges a fast path: by cosine between the
# same text's vectors. Their per-element error is set by the hardware, not by us: bf16 rounds
# every activation to 8 significant bits and another batch shape picks another oneDNN kernel
# (or the emulated path) that rounds its accumulators elsewhere; ONNX Runtime's int8 quantises
# activations per batch tensor (uint8, scale = range / 255, zero point from the batch's min and
# max, pad rows included), so batch mates move the rounding grid; and on CPUs without VNNI
# (AVX2) MLAS multiplies u8 x s8 pairs with VPMADDUBSW, whose int16 pair sums saturate
# (255 * 127 * 2 > 32767) where VNNI/AMX accumulate in int32, so which entries saturate depends
# on the batch's zero point too. A machine-tuned elementwise bound (2e-2, seen 6e-3 on
# AVX-512/VNNI) failed at 3.1e-2 on an AVX2-only EPYC. What every machine must keep is the
# accuracy contract: each vector within cosine LOSSY_COS of the fp32 reference, whatever batch
# it came in (test_mode_against_reference). Two vectors each within angle acos(LOSSY_COS) of the
# reference are within twice that angle of each other, so any two batchings must agree to
# cos(2 * acos(LOSSY_COS)) = 0.998: a bound derived from the contract, not from one CPU.
LOSSY_COS = 0.999
LOSSY_BATCH_COS = float(np.cos(2 * np.arccos(LOSSY_COS)))


#: Exports (ONNX, FastEmbed) go to a cache of this module's own, not ~/.cache.
pytestmark = [pytest.mark.usefixtures("isolated_export_cache"), *EXPECTED_WARNINGS]  # varied_texts() cuts on purpose


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir):
    """The tiny model loaded once for the module (loading is 0.5 s, mostly its tokenizer): each Encoder
    copies the weights into a model of its own, so the encoders built from it do not share state."""
    return load_checkpoint(str(tiny_model_dir))


@pytest.fixture(scope="module")
def reference(checkpoint):
    """transformers' GPTNeoModel (eager attention) + Dense/GELU + mean pooling by hand, one text at a time."""
    from transformers import GPTNeoModel

    ckpt = checkpoint
    gpt = GPTNeoModel(ckpt.config).eval()
    gpt.load_state_dict(ckpt.transformer_state, strict=False)
    texts = varied_texts()
    out = []
    with torch.no_grad():
        for text in texts:
            ids = ckpt.tokenizer(text.strip(), add_special_tokens=False)["input_ids"][:75]
            if not ids:
                out.append(np.zeros(32, dtype=np.float32))
                continue
            h = gpt(input_ids=torch.tensor([ids])).last_hidden_state[0]
            for layer in ckpt.dense:
                h = F.gelu(h @ layer.weight.T + layer.bias)
            out.append(h.mean(0).numpy())
    return texts, np.stack(out)


@pytest.fixture(scope="module")
def encoders(checkpoint):
    ckpt = checkpoint
    cache: dict = {}

    def get(mode, backend):
        if (mode, backend) not in cache:
            with warnings.catch_warnings():  # "emulated and slow" where bf16 is not native
                warnings.simplefilter("ignore", UserWarning)
                cache[mode, backend] = Encoder(ckpt, device="cpu", dtype=mode, backend=backend)
        return cache[mode, backend]

    return get


def _cosines(a, b):
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    keep = (na > 0) & (nb > 0)
    assert np.array_equal(na > 0, nb > 0)  # empty texts: zero vectors on both sides
    return (a[keep] * b[keep]).sum(1) / (na[keep] * nb[keep])


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.parametrize("mode,backend", PATHS)
def test_mode_against_reference(encoders, reference, mode, backend):
    texts, ref = reference
    enc = encoders(mode, backend)
    assert (enc.mode, enc.backend) == (mode, backend)
    got = enc.encode(texts)
    assert got.dtype == np.float32 and got.shape == ref.shape
    if mode == "fp32":
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    else:
        assert _cosines(got, ref).min() >= LOSSY_COS


#: bf16 on a CPU is emulated or slow to run one text at a time: the full suite covers it.
def _slow_if_bf16(p):
    values, marks = (p.values, list(p.marks)) if hasattr(p, "marks") else (p, [])
    return pytest.param(*values, marks=marks + [pytest.mark.slow] if values[0] == "bf16" else marks)


BATCH_PATHS = [_slow_if_bf16(p) for p in PATHS]


@pytest.mark.parametrize("mode,backend", BATCH_PATHS)
def test_mode_is_batch_invariant(encoders, reference, mode, backend):
    texts = reference[0]
    enc = encoders(mode, backend)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    rng = random.Random(2)
    for budget, max_batch in ((64, 3), (100_000, 1024)):
        enc.token_budget, enc.max_batch_size = budget, max_batch
        order = list(range(len(texts)))
        rng.shuffle(order)
        got = enc.encode([texts[i] for i in order])
        if mode == "fp32":
            scale = np.abs(alone).max(axis=1, keepdims=True) + 1e-12
            worst = (np.abs(got - alone[order]) / scale[order]).max()
            assert worst <= FP32_BATCH_TOL, f"{mode}/{backend}: {worst:.2e} at budget {budget}"
        else:
            worst = _cosines(got, alone[order]).min()
            assert worst >= LOSSY_BATCH_COS, f"{mode}/{backend}: cosine {worst:.5f} at budget {budget}"
    enc.token_budget, enc.max_batch_size = 4096, 1024


def test_auto_picks_the_fast_paths(encoders):
    assert encoders("fp32", "auto").backend == ("onednn" if onednn.available(torch.float32) else "eager")
    if HAS_ORT:
        assert encoders("int8", "auto").backend == "onnx"
    assert encoders("fp32", "auto").warmup_seconds >= 0


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_onnx_export_is_cached_and_keyed_by_weights(tiny_model_dir, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("SGPT_CACHE_DIR", str(tmp_path))
    ckpt = load_checkpoint(str(tiny_model_dir))
    with caplog.at_level(logging.WARNING, logger="sgpt_qdrant.runtime.ort"):
        first = Encoder(ckpt, device="cpu", dtype="int8")
    files = list(tmp_path.rglob("model.onnx"))
    assert len(files) == 1 and not list(tmp_path.rglob(".tmp-*"))
    said = [r.getMessage() for r in caplog.records if "exporting" in r.getMessage()]  # not 40 s of silence
    assert len(said) == 1 and "int8" in said[0] and str(files[0].parent) in said[0]
    caplog.clear()

    def no_export(*args, **kwargs):
        raise AssertionError("exported again despite a cached file")

    monkeypatch.setattr(ort, "export", no_export)
    with caplog.at_level(logging.WARNING, logger="sgpt_qdrant.runtime.ort"):
        again = Encoder(ckpt, device="cpu", dtype="int8")
    assert not [r for r in caplog.records if "exporting" in r.getMessage()]  # cached: nothing to say
    texts = varied_texts()[:8]
    np.testing.assert_array_equal(again.encode(texts), first.encode(texts))
    ckpt.dense[0].weight.mul_(2)  # other weights: a new key, so a new export
    monkeypatch.undo()
    monkeypatch.setenv("SGPT_CACHE_DIR", str(tmp_path))
    Encoder(ckpt, device="cpu", dtype="int8")
    assert len(list(tmp_path.rglob("model.onnx"))) == 2


def test_int8_without_onnxruntime_falls_back_to_exact_fp32(checkpoint, reference, monkeypatch):
    monkeypatch.setattr(ort, "available", lambda: False)
    with pytest.warns(RuntimeWarning, match="onnxruntime is not installed"), \
            pytest.warns(RuntimeWarning, match="int8 runs only on ONNX Runtime; running exact fp32"):
        enc = Encoder(checkpoint, device="cpu", dtype="int8")
    assert enc.backend == "eager"
    texts, ref = reference
    np.testing.assert_allclose(enc.encode(texts), ref, atol=1e-5, rtol=0)


def test_missing_onednn_falls_back_to_eager(checkpoint, monkeypatch):
    monkeypatch.setattr(onednn, "_probe", lambda dtype: False)
    with pytest.warns(RuntimeWarning, match="oneDNN fp32"):
        enc = Encoder(checkpoint, device="cpu")
    assert enc.backend == "eager"


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_a_fast_path_that_disagrees_is_never_used(tiny_model_dir, reference, monkeypatch):
    real_call = ort.OrtRunner.__call__
    monkeypatch.setattr(ort.OrtRunner, "__call__", lambda self, ids, mask: real_call(self, ids, mask) * 1.01)
    with pytest.warns(RuntimeWarning, match="disagrees with eager"):
        enc = Encoder(str(tiny_model_dir), device="cpu", backend="onnx")
    assert enc.backend == "eager"
    np.testing.assert_allclose(enc.encode(reference[0]), reference[1], atol=1e-5, rtol=0)


def test_failed_export_falls_back(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("SGPT_CACHE_DIR", str(tmp_path))

    def broken(model, path):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(ort, "export", broken)
    with pytest.warns(RuntimeWarning, match="exporter exploded"):
        enc = Encoder(checkpoint, device="cpu", backend="onnx")
    assert enc.backend == "eager" and not list(tmp_path.rglob("*.onnx"))


def test_mode_names_and_errors():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    pick = precision.pick
    assert pick(cpu, None) == pick(cpu, "auto") == pick(cpu, "float32") == pick(cpu, torch.float32) == "fp32"
    assert pick(cpu, "INT8") == pick(cpu, "qint8") == "int8"
    assert precision.MODES["int8"] == torch.float32  # int8 quantises a float32 model
    assert precision.name_of(torch.bfloat16) == "bf16" and precision.name_of(torch.float16) == "fp16"
    with pytest.raises(ValueError, match="int8 is a CPU mode"):
        pick(cuda, "int8")
    with pytest.raises(ValueError, match="dtype: 'fp4'"):
        pick(cpu, "fp4")
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        pick(cpu, "fp16")
    assert pick_devices(["cpu"]) == [cpu]
    with pytest.raises(ValueError, match="device"):
        pick_devices(["cpu", "cuda:0"])


def test_bf16_on_a_cpu_without_native_bf16_is_warned(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated and slow"):
        assert precision.pick(torch.device("cpu"), "bf16") == "bf16"


def test_training_precision_choices(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision.pick_training(cpu, "auto") == torch.float32
    assert precision.pick_training(cpu, "fp32") == torch.float32
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda: True)
    assert precision.pick_training(cuda, "auto") == torch.bfloat16
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda: False)
    assert precision.pick_training(cuda, "auto") == torch.float16  # old GPUs: fp16 with a grad scaler
    with pytest.raises(ValueError, match="--precision: 'int8' is an inference mode"):
        precision.pick_training(cpu, "int8")
    with pytest.raises(ValueError, match="--precision: fp16 is not supported on the CPU"):
        precision.pick_training(cpu, "fp16")


def test_backend_errors(tiny_encoder):
    with pytest.raises(ValueError, match="backend: 'tensorrt'"):
        Encoder(tiny_encoder.checkpoint, device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="onnx runs fp32 or int8"):
        Encoder(tiny_encoder.checkpoint, device="cpu", dtype="bf16", backend="onnx")
    with pytest.raises(ValueError, match="eager has no int8"):
        Encoder(tiny_encoder.checkpoint, device="cpu", dtype="int8", backend="eager")


def test_pad_by_hand():
    ids = [[5, 6, 7], [], [8]]
    input_ids, mask = pad(ids, [0, 2, 1], pad_id=99)
    assert input_ids.tolist() == [[5, 6, 7], [8, 99, 99], [99, 99, 99]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert input_ids.dtype == mask.dtype == torch.long


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_embedding_accepts_mode_names(tiny_model_dir):
    pytest.importorskip("llama_index.core")  # the GPU machine runs this file without LlamaIndex
    from sgpt_qdrant import SGPTEmbedding

    emb = SGPTEmbedding(str(tiny_model_dir), device="cpu", dtype="int8" if HAS_ORT else "fp32")
    assert emb.encoder.mode == ("int8" if HAS_ORT else "fp32")
    assert len(emb.get_text_embedding("hello")) == 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_cuda_pool_matches_cpu(tiny_model_dir, reference, mode):
    from sgpt_qdrant.runtime.cuda import DevicePool

    texts, ref = reference
    enc = Encoder(str(tiny_model_dir), device="cuda", dtype=mode, token_budget=256)
    assert isinstance(enc._executor, DevicePool) and len(enc._executor.devices) == torch.cuda.device_count()
    got = enc.encode(texts * 3)
    assert _cosines(got, np.tile(ref, (3, 1))).min() >= (0.99999 if mode == "fp32" else LOSSY_COS)
    assert _cosines(got[: len(texts)], got[len(texts): 2 * len(texts)]).min() >= LOSSY_BATCH_COS


def test_batches_close_early_instead_of_padding_short_texts():
    lengths = [70, 69, 60, 12, 11, 10]
    # budget only: everything fits 6 * 70 <= 1000, so 10-token texts are padded to 70
    assert plan_batches(lengths, token_budget=1000, max_batch=8) == [[0, 1, 2, 3, 4, 5]]
    # min_tokens 100: [70, 69] holds 140 >= 100 padded tokens; 60 >= 0.8 * 70 = 56 still joins;
    # 12 < 56 closes it; then 12, 11, 10 (all >= 0.8 * 12 = 9.6) stay together
    assert plan_batches(lengths, 1000, 8, min_tokens=100) == [[0, 1, 2], [3, 4, 5]]
    # below min_tokens nothing closes early: [70] holds 70 < 100 tokens, so 12 joins; then
    # [70, 12] holds 140 and 11 < 56 starts a new batch
    assert plan_batches([70, 12, 11], 1000, 8, min_tokens=100) == [[0, 1], [2]]


def test_device_pool_logic_on_cpu_workers(checkpoint, reference, monkeypatch):
    """The GPU path's queue, workers, streaming tokeniser and OOM splitting, run with CPU workers."""
    from sgpt_qdrant import engine
    from sgpt_qdrant.runtime.cuda import DevicePool

    texts, ref = reference
    enc = Encoder(checkpoint, device="cpu", token_budget=1000)
    assert not enc._executor.streams  # the CPU runs one batch after another; swap in the pool
    enc._executor = DevicePool(enc.model, [torch.device("cpu"), torch.device("cpu")], on_oom=enc._shrink_budget)
    real = enc.model.forward
    calls = []

    def flaky(input_ids, mask):  # the first wide batch runs out of memory once
        calls.append(input_ids.shape[0])
        if len(calls) == 1 and input_ids.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(input_ids, mask)

    monkeypatch.setattr(enc.model, "forward", flaky)
    monkeypatch.setattr(engine, "TOKENIZE_CHUNK", 7)  # several chunks tokenised ahead
    try:
        got = enc.encode(texts * 2)
    finally:
        enc._executor.close()
    np.testing.assert_allclose(got, np.concatenate([ref, ref]), atol=1e-5, rtol=0)
    assert enc.token_budget < 1000 and len(calls) > 2
