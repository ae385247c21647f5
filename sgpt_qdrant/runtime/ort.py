"""ONNX Runtime on the CPU: the model exported once to ONNX, optionally int8-quantised.

fp32 runs the exported graph as is (exact to float rounding). int8 applies ONNX Runtime's
dynamic quantisation to every MatMul with a constant weight (weights int8 per output channel,
activations int8 per tensor, scale computed per batch at run time); embeddings, LayerNorm,
attention scores and pooling stay fp32. Both then get ONNX Runtime's transformer fusions that
are plain math rewrites (LayerNorm + residual add, GELU + bias; attention fusion stays off: it
assumes GPT-2's 1/sqrt(d) scale), worth about 8% on a 2-core CPU.

Export plus quantisation take seconds, so the files are cached by a hash of the weights, the
mode and the library versions (see :mod:`.cache`) and written atomically (temp dir + rename),
so a crash never leaves a half file that a later run would trust.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..user_cache import cache_root
from .cache import versions, weights_key

log = logging.getLogger(__name__)


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _versions() -> str:
    return versions(("ort", "onnxruntime"), ("onnx", "onnx")) + ";v3"


def export_graph(module: nn.Module, path: Path, output: str, per_token: bool = False) -> None:
    """TorchScript-based export of ``module(input_ids, attention_mask) -> output`` with dynamic
    batch and length (the graph is shape-generic); ``per_token``: the output has a length axis."""
    ids = torch.zeros((2, 5), dtype=torch.long)
    mask = torch.ones((2, 5), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            output: {0: "batch", 1: "length"} if per_token else {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=[output], dynamic_axes=axes, opset_version=17, dynamo=False)


def export(model: nn.Module, path: Path) -> None:
    """The whole model, ``(input_ids, attention_mask) -> embeddings``, Q/K/V fused into one matmul."""
    from .fuse import fuse_qkv

    export_graph(fuse_qkv(copy.deepcopy(model).float().cpu().eval()), path, "embeddings")


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs a "consider pre-processing" notice on the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)


def model_file(model: nn.Module, mode: str) -> Path:
    """The cached ONNX file for ``model`` in ``mode`` ("fp32" or "int8"), built if missing."""
    key = weights_key(model, mode, _versions())
    final = cache_root() / "onnx" / key
    target = final / "model.onnx"
    if target.exists():
        log.info("using cached ONNX model %s", target)
        return target
    # A warning, not info: the first int8 run of the 125M model spends ~40 s here, and silence
    # that long reads as a hang.
    log.warning("exporting the model to ONNX %s (once: about 40 s for a 125M model; cached at %s)", mode, final)
    with atomic.staging_folder(final.parent) as tmp:
        export(model, tmp / "fp32.onnx")
        if mode == "int8":
            quantize_int8(tmp / "fp32.onnx", tmp / "plain.onnx")
            (tmp / "fp32.onnx").unlink()
        else:
            (tmp / "fp32.onnx").rename(tmp / "plain.onnx")
        fuse(tmp / "plain.onnx", tmp / "model.onnx", model)
        atomic.publish_folder(tmp, final, replace=False)  # another process first: theirs is as good
    log.info("exported ONNX model (%s) to %s", mode, target)
    return target


def fuse(src: Path, dst: Path, model: nn.Module) -> None:
    """LayerNorm/residual and GELU/bias fusions; on any failure the plain graph is used."""
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        config = model.transformer.config
        options = FusionOptions("gpt2")
        options.enable_attention = False
        quiet = logging.getLogger("onnxruntime.transformers.optimizer")  # "producer not matched"
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fused = optimize_model(str(src), model_type="gpt2", num_heads=config.num_heads,
                                       hidden_size=config.hidden_size, optimization_options=options, opt_level=0)
        finally:
            quiet.setLevel(level)
        fused.save_model_to_file(str(dst))
        src.unlink()
    except Exception as exc:  # the fusions are an optimisation, never a requirement
        log.info("ONNX Runtime fusions skipped (%s: %s)", type(exc).__name__, exc)
        src.rename(dst)


class OrtRunner:
    """Callable like the torch model: ``(input_ids, mask) -> (batch, dim)`` float32 tensor."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feed = {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()}
        return torch.from_numpy(np.ascontiguousarray(self.session.run(None, feed)[0]))
