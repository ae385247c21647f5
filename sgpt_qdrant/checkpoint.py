"""Read and write SGPT checkpoints in the legacy sentence-transformers (Hub) layout.

The published SGPT weights need the Dense layers' ``key_name`` that today's
sentence-transformers drops, so we read the files ourselves into a plain
:class:`Checkpoint` description. Nothing here runs remote code: weights come from
safetensors or from ``torch.load(weights_only=True)``. A checkpoint is checked whole before
anything is built from it (the config against the weights' names and shapes, finite weights,
module paths inside the folder), so a hostile or corrupt one fails in one line naming the file.

torch and transformers are imported where they are used, so importing this module (as the
ingest CLI's ``--help`` does) stays cheap; :class:`LazyTokenizer` puts off transformers until a
text is tokenised.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GPTNeoConfig, PreTrainedTokenizerBase

DEFAULT_MODEL = "Muennighoff/SGPT-125M-mean-nli-linearthenpool5"
#: Environment variable naming the checkpoint when no model is given (CLIs and Python alike).
MODEL_ENV = "SGPT_MODEL"
PAD_FALLBACK = "<|endoftext|>"

#: Dense activations we can run, by the class path the Dense config stores.
ACTIVATIONS = {
    "torch.nn.modules.activation.GELU": "gelu",
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.linear.Identity": "identity",
}
ACTIVATION_CLASS = {v: k for k, v in ACTIVATIONS.items()}

#: Pooling modes we can run, by the sentence-transformers config flag.
POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_ALL_POOLING_FLAGS = (
    "pooling_mode_cls_token",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)

_HUB_FILES = [
    "*.json",
    "*.txt",
    "*.safetensors",
    "pytorch_model.bin",
    "*/config.json",
    "*/*.safetensors",
    "*/pytorch_model.bin",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be run as written; the message names the file and field."""


@dataclass
class DenseLayer:
    """One ``N_Dense`` module: ``activation(x @ weight.T + bias)``."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    activation: str = "gelu"
    before_pooling: bool = True

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class Checkpoint:
    """Everything needed to run (or save) an SGPT model, independent of any framework."""

    config: GPTNeoConfig
    transformer_state: dict[str, torch.Tensor]
    dense: list[DenseLayer]
    pooling: str
    max_seq_length: int
    tokenizer: PreTrainedTokenizerBase
    pad_id: int
    normalize: bool = False
    source: str = ""

    @property
    def dimension(self) -> int:
        return self.dense[-1].out_features if self.dense else int(self.config.hidden_size)


# --------------------------------------------------------------------------- locating


def resolve_model_name(model: str | os.PathLike[str] | None = None) -> str:
    """The checkpoint to use: ``model`` if given, else ``$SGPT_MODEL``, else the Hub id.

    One rule for every entry point (``Encoder``, ``SGPTEmbedding``, ``SGPTNodeParser``, the
    CLIs), so a machine without the Hub is set up once with ``SGPT_MODEL=path/to/model``.
    """
    if model is not None and str(model).strip():
        return os.fspath(model)
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL


_WAY_OUT = (
    "Pass a local copy of the model folder instead (--model DIR on the command line, or "
    f"{MODEL_ENV}=DIR for every command and Python call), or, to try everything without the "
    "real weights, write a random stand-in with `python -m sgpt_qdrant.testing tiny-model` "
    f"(needs `pip install 'sgpt-qdrant[standin]'`) and set {MODEL_ENV}=tiny-model."
)


def resolve(model: str | os.PathLike[str] | None = None) -> Path:
    """A local directory as is; otherwise a Hub id fetched through huggingface_hub's cache.

    ``None`` follows :func:`resolve_model_name` (``$SGPT_MODEL``, then the Hub id).
    Honours ``HF_HOME`` and ``HF_HUB_OFFLINE``. Offline and uncached fails at once with a
    message that says how to point at a local copy instead.
    """
    model = resolve_model_name(model)
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise CheckpointError(f"{name}: no such model directory (and not a Hub id like 'org/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(name, allow_patterns=_HUB_FILES, etag_timeout=10))
    except HFValidationError as exc:
        raise CheckpointError(f"{name}: not a valid Hub id ({exc})") from None
    except Exception as exc:  # network, offline mode, missing repo: one clear message
        raise CheckpointError(
            f"cannot fetch {name!r} from the Hugging Face Hub ({type(exc).__name__}); to use "
            f"it offline, download it on a connected machine (`hf download {name}`) and copy "
            f"the HF_HOME cache. {_WAY_OUT}"
        ) from None


# --------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not a config file (JSON nested too deeply)") from None


#: More modules than any checkpoint of the family has (Transformer, a few Dense, Pooling, Normalize).
MAX_MODULES = 16


def _max_seq_length(st_cfg: dict, st_cfg_path: Path, fallback: object) -> int:
    """max_seq_length of sentence_bert_config.json (else ``fallback``): a positive integer."""
    value = st_cfg.get("max_seq_length")
    if value is None:
        value = fallback
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{st_cfg_path}: field max_seq_length {value!r} must be a positive integer")
    return value


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: missing file model.safetensors or pytorch_model.bin")


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Tensors of the folder's weight file; any that is not finite is an error naming it."""
    import torch

    path = _weights_file(folder)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # SafetensorError, OSError: a corrupt header or truncated file
            raise CheckpointError(f"{path}: not a valid safetensors file ({_one_line(exc)})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot be read safely ({_one_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a mapping of tensor names to tensors")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {key} has NaN or infinite values")
    return state


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _read_transformer(folder: Path) -> tuple[GPTNeoConfig, dict[str, torch.Tensor]]:
    cfg_path = folder / "config.json"
    raw = _read_json(cfg_path)
    if raw.get("model_type") != "gpt_neo":
        raise CheckpointError(
            f"{cfg_path}: field model_type is {raw.get('model_type')!r}; only 'gpt_neo' is supported"
        )
    from transformers import GPTNeoConfig

    try:
        config = GPTNeoConfig.from_dict(raw)
    except Exception as exc:  # e.g. attention_types that do not expand to num_layers
        raise CheckpointError(f"{cfg_path}: {_one_line(exc)}") from None
    for name in ("hidden_size", "num_layers", "vocab_size", "max_position_embeddings"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "num_layers" else 1):
            raise CheckpointError(f"{cfg_path}: field {name} {value!r} must be a positive integer")
    eps = config.layer_norm_epsilon
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise CheckpointError(f"{cfg_path}: field layer_norm_epsilon {eps!r} must be a positive finite number")
    heads, hidden = config.num_heads, config.hidden_size
    if not isinstance(heads, int) or heads < 1 or hidden % heads:
        raise CheckpointError(f"{cfg_path}: field num_heads {heads!r} must be a positive divisor of "
                              f"hidden_size {hidden}")
    state = _read_weights(folder)
    prefix = "transformer."
    if any(k.startswith(prefix) for k in state):  # saved from GPTNeoForCausalLM
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    # Causal-mask buffers of old transformers versions are derived, not learned.
    state = {k: v for k, v in state.items() if not k.endswith((".attn.attention.bias", ".masked_bias"))}
    _check_gpt_neo(config, state, cfg_path, _weights_file(folder))
    return config, state


def _gpt_neo_shapes(config: GPTNeoConfig) -> dict[str, tuple[int, ...]]:
    """Every GPT-Neo parameter name and shape ``config`` implies, without building anything."""
    h, inner = config.hidden_size, config.intermediate_size or 4 * config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (config.vocab_size, h),
                                          "wpe.weight": (config.max_position_embeddings, h),
                                          "ln_f.weight": (h,), "ln_f.bias": (h,)}
    for i in range(config.num_layers):
        p = f"h.{i}."
        shapes.update({p + "ln_1.weight": (h,), p + "ln_1.bias": (h,), p + "ln_2.weight": (h,), p + "ln_2.bias": (h,),
                       p + "attn.attention.out_proj.weight": (h, h), p + "attn.attention.out_proj.bias": (h,),
                       p + "mlp.c_fc.weight": (inner, h), p + "mlp.c_fc.bias": (inner,),
                       p + "mlp.c_proj.weight": (h, inner), p + "mlp.c_proj.bias": (h,)})
        shapes.update({p + f"attn.attention.{x}_proj.weight": (h, h) for x in "qkv"})
    return shapes


def _check_gpt_neo(config: GPTNeoConfig, state: dict[str, torch.Tensor], cfg_path: Path, weights: Path) -> None:
    """The config and the weights describe the same model: layer count first, then every name and shape."""
    layers = {int(k.split(".")[1]) for k in state if k.startswith("h.") and k.split(".")[1].isdigit()}
    held = max(layers) + 1 if layers else 0
    if config.num_layers != held:
        raise CheckpointError(f"{cfg_path}: num_layers {config.num_layers} but {weights.name} holds {held} layers")
    shapes = _gpt_neo_shapes(config)
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes and not k.startswith("lm_head.")]
    if missing or unexpected:
        raise CheckpointError(f"{weights}: does not match {cfg_path.name} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for key, shape in shapes.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(f"{weights}: {key} is {tuple(state[key].shape)} but {cfg_path.name} implies {shape}")


def read_gpt_neo(folder: str | os.PathLike[str]) -> tuple[GPTNeoConfig, dict[str, torch.Tensor]]:
    """A plain Hugging Face GPT-Neo directory (no modules.json): config and transformer weights.

    A ``transformer.`` prefix (GPTNeoForCausalLM) is stripped and ``lm_head`` dropped.
    """
    return _read_transformer(Path(folder))


def _read_dense(folder: Path, before_pooling: bool) -> DenseLayer:
    cfg_path = folder / "config.json"
    cfg = _read_json(cfg_path)
    act_name = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
    if act_name not in ACTIVATIONS:
        raise CheckpointError(
            f"{cfg_path}: field activation_function {act_name!r} is not supported "
            f"(supported: {', '.join(ACTIVATIONS)})"
        )
    key = cfg.get("key_name", "sentence_embedding")
    expected = "token_embeddings" if before_pooling else "sentence_embedding"
    if key != expected:
        where = "before" if before_pooling else "after"
        raise CheckpointError(
            f"{cfg_path}: field key_name is {key!r} but the layer stands {where} pooling "
            f"in modules.json, where only {expected!r} has an effect"
        )
    state = _read_weights(folder)
    weight = state.get("linear.weight")
    if weight is None:
        raise CheckpointError(f"{folder}: weights have no 'linear.weight'")
    shape = (cfg.get("out_features"), cfg.get("in_features"))
    if tuple(weight.shape) != shape:
        raise CheckpointError(
            f"{cfg_path}: fields out_features/in_features say {shape} but linear.weight is "
            f"{tuple(weight.shape)}"
        )
    has_bias = bool(cfg.get("bias", True))
    bias = state.get("linear.bias")
    if has_bias and (bias is None or tuple(bias.shape) != (shape[0],)):
        raise CheckpointError(f"{cfg_path}: field bias is true but linear.bias is missing or mis-shaped")
    return DenseLayer(weight.float(), bias.float() if has_bias else None, ACTIVATIONS[act_name], before_pooling)


def _read_pooling(folder: Path) -> str:
    cfg_path = folder / "config.json"
    cfg = _read_json(cfg_path)
    on = [k for k in _ALL_POOLING_FLAGS if cfg.get(k)]
    if "pooling_mode" in cfg and not on:  # newer sentence-transformers spelling
        mode = cfg["pooling_mode"]
        on = [f for f, m in POOLING_FLAGS.items() if m == mode] or [str(mode)]
    if len(on) != 1 or on[0] not in POOLING_FLAGS:
        raise CheckpointError(
            f"{cfg_path}: pooling mode {on or 'none'} is not supported; exactly one of "
            f"{', '.join(POOLING_FLAGS)} must be true"
        )
    return POOLING_FLAGS[on[0]]


def _check_tokenizer_files(folder: Path) -> None:
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        raise CheckpointError(f"{folder}: missing file tokenizer.json (or vocab.json + merges.txt)")


def load_tokenizer(folder: Path) -> tuple[PreTrainedTokenizerBase, int]:
    """The GPT-2 BPE tokenizer, set to add no BOS/EOS, and its pad id."""
    _check_tokenizer_files(folder)
    from transformers import GPT2TokenizerFast

    try:
        tokenizer = GPT2TokenizerFast.from_pretrained(str(folder))
    except Exception as exc:  # a corrupt tokenizer.json, vocab.json or merges.txt
        name = "tokenizer.json" if (folder / "tokenizer.json").is_file() else "vocab.json/merges.txt"
        raise CheckpointError(f"{folder / name}: cannot be read as a GPT-2 tokenizer ({_one_line(exc)})") from None
    if tokenizer.pad_token is None:
        special = folder / "special_tokens_map.json"
        pad = _read_json(special).get("pad_token") if special.is_file() else None
        if isinstance(pad, dict):
            pad = pad.get("content")
        tokenizer.pad_token = pad or PAD_FALLBACK
    tokenizer.padding_side = "right"
    return tokenizer, int(tokenizer.pad_token_id)


class LazyTokenizer:
    """:func:`load_tokenizer`'s tokenizer, loaded at its first use: a caller that may tokenise nothing
    (an unchanged ``sgpt-ingest`` re-run) never imports transformers (half a second of start-up).

    Used like the tokenizer: called, its attributes read and set (one set before the load is set on
    it when it loads). A folder without tokenizer files is refused at once, as :func:`load_tokenizer`
    refuses it; a damaged file at the first use, with the same :class:`CheckpointError` at every use
    after. Pickled (to Ray workers) as the loaded tokenizer itself, which needs no model folder there."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        folder = Path(folder)
        _check_tokenizer_files(folder)
        self.__dict__.update(_folder=folder, _tokenizer=None, _error=None, _pending={}, _lock=threading.Lock())

    @property
    def loaded(self) -> bool:
        return self.__dict__["_tokenizer"] is not None

    @property
    def folder(self) -> Path:
        return self.__dict__["_folder"]

    def get(self) -> PreTrainedTokenizerBase:
        """The tokenizer, loaded now if it is not yet."""
        tokenizer = self.__dict__["_tokenizer"]
        if tokenizer is not None:
            return tokenizer
        with self.__dict__["_lock"]:
            if self.__dict__["_tokenizer"] is None:
                if self.__dict__["_error"] is not None:
                    raise CheckpointError(self.__dict__["_error"])
                try:
                    tokenizer, _ = load_tokenizer(self.__dict__["_folder"])
                except CheckpointError as exc:
                    self.__dict__["_error"] = str(exc)
                    raise
                for name, value in self.__dict__["_pending"].items():
                    setattr(tokenizer, name, value)
                self.__dict__["_tokenizer"] = tokenizer
        return self.__dict__["_tokenizer"]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.get()(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.get())

    def __getattr__(self, name: str) -> Any:  # only for names the stand-in itself lacks
        if name.startswith("__"):  # copy / pickle / inspect probes load nothing
            raise AttributeError(name)
        return getattr(self.get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.loaded:
            setattr(self.__dict__["_tokenizer"], name, value)
        else:
            self.__dict__["_pending"][name] = value

    def __reduce__(self) -> tuple:
        return _same, (self.get(),)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded yet"
        return f"LazyTokenizer({str(self.__dict__['_folder'])!r}, {state})"


def _same(value: Any) -> Any:
    return value


def _read_modules(modules_path: Path) -> list[dict[str, Any]]:
    """modules.json as a list of module entries in ``idx`` order."""
    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise CheckpointError(f"{modules_path}: expected a list of modules (objects with idx, path, type)")
    if len(modules) > MAX_MODULES:
        raise CheckpointError(f"{modules_path}: {len(modules)} modules; an SGPT checkpoint has at most {MAX_MODULES}")
    paths = [os.path.normpath(str(m.get("path", ""))) for m in modules if str(m.get("type", "")).endswith("Dense")]
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise CheckpointError(f"{modules_path}: module path {repeated[0]!r} is listed more than once")
    try:
        return sorted(modules, key=lambda m: int(m.get("idx", 0)))
    except (TypeError, ValueError):
        raise CheckpointError(f"{modules_path}: field idx must be an integer in every module") from None


def load(model: str | os.PathLike[str] | None = None, tokenizer: LazyTokenizer | None = None) -> Checkpoint:
    """Read a checkpoint (local directory or Hub id) into a :class:`Checkpoint`.

    ``tokenizer``: this folder's :class:`LazyTokenizer`, when the caller has one already (the ingest
    chunks with it before the model loads): used when it is loaded, rather than parsing the
    tokenizer files a second time (a third of a second or more)."""
    model = resolve_model_name(model)
    root = resolve(model)
    modules = _read_module_list(root, weights=True)
    config, state = modules.transformer
    dense_list = modules.dense
    st_cfg_path = root / "sentence_bert_config.json"
    st_cfg = _read_json(st_cfg_path) if st_cfg_path.is_file() else {}
    max_len = _max_seq_length(st_cfg, st_cfg_path, config.max_position_embeddings)
    if max_len > config.max_position_embeddings:
        raise CheckpointError(
            f"{st_cfg_path}: field max_seq_length {max_len} exceeds max_position_embeddings "
            f"{config.max_position_embeddings}"
        )
    if tokenizer is not None and tokenizer.loaded and Path(tokenizer.folder) == root:
        tokenizer, pad_id = tokenizer.get(), int(tokenizer.get().pad_token_id)
    else:
        tokenizer, pad_id = load_tokenizer(root)
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(f"{root / 'config.json'}: vocab_size {config.vocab_size} is smaller than the "
                              f"tokenizer's {len(tokenizer)} tokens")
    width = config.hidden_size
    for i, layer in enumerate(dense_list):
        if layer.in_features != width:
            raise CheckpointError(
                f"{root}: Dense layer {i + 1} expects in_features {layer.in_features} but receives {width}"
            )
        width = layer.out_features
    return Checkpoint(config, state, dense_list, modules.pooling, max_len, tokenizer, pad_id, modules.normalize,
                      str(model))


def _module_folder(root: Path, rel: object, modules_path: Path) -> Path:
    """A module's folder, which must stay inside the model folder (no absolute path, no ``..``)."""
    if not isinstance(rel, str):
        raise CheckpointError(f"{modules_path}: module path {rel!r} is not a string")
    folder = (root / rel).resolve()
    if Path(rel).is_absolute() or not folder.is_relative_to(root.resolve()):
        raise CheckpointError(f"{modules_path}: module path {rel!r} leaves the model folder")
    return root / rel


def peek(model: str | os.PathLike[str] | None = None) -> tuple[Path, int, int]:
    """(folder, output dimension, max_seq_length) from the config files alone, no weights read.

    For callers that must check a store before deciding whether the model is needed at all."""
    root = resolve(model)
    modules = _read_module_list(root, weights=False)
    dim = modules.dense[-1].get("out_features") if modules.dense else modules.transformer.get("hidden_size")
    max_len = modules.transformer.get("max_position_embeddings")
    st_cfg_path = root / "sentence_bert_config.json"
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise CheckpointError(f"{root / 'modules.json'}: no Transformer module with hidden_size and max length")
    st_cfg = _read_json(st_cfg_path) if st_cfg_path.is_file() else {}
    return root, dim, _max_seq_length(st_cfg, st_cfg_path, max_len)


@dataclass
class _Modules:
    """What modules.json lists, read in full (``weights``) or from the config files alone."""

    transformer: Any = None  # (config, state), or the config.json dict
    dense: list[Any] = field(default_factory=list)  # DenseLayer, or each config.json dict
    pooling: str | None = None
    normalize: bool = False


def _read_module_list(root: Path, weights: bool) -> _Modules:
    """The one walk over modules.json, for :func:`load` and :func:`peek`."""
    modules_path = root / "modules.json"
    found = _Modules()
    for entry in _read_modules(modules_path):
        kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
        folder = _module_folder(root, entry.get("path", ""), modules_path)
        if kind == "Transformer":
            found.transformer = _read_transformer(folder) if weights else _read_json(folder / "config.json")
        elif kind == "Dense":
            found.dense.append(_read_dense(folder, before_pooling=found.pooling is None) if weights
                               else _read_json(folder / "config.json"))
        elif kind == "Pooling":
            found.pooling = _read_pooling(folder)
        elif kind == "Normalize":
            found.normalize = True
        else:
            raise CheckpointError(f"{modules_path}: module type {entry.get('type')!r} is not supported")
    if found.transformer is None or found.pooling is None:
        raise CheckpointError(f"{modules_path}: needs a Transformer and a Pooling module")
    return found


# --------------------------------------------------------------------------- writing


def save(checkpoint: Checkpoint, path: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` in the legacy Hub layout of the published SGPT models."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)

    def dump(rel: str, obj: Any) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")

    n_before = sum(layer.before_pooling for layer in checkpoint.dense)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    pooling_idx = n_before + 1
    for i, layer in enumerate(checkpoint.dense):
        idx = i + 1 if layer.before_pooling else i + 2
        folder = f"{idx}_Dense"
        modules.append({"idx": idx, "name": str(idx), "path": folder, "type": "sentence_transformers.models.Dense"})
        dump(
            f"{folder}/config.json",
            {
                "in_features": layer.in_features,
                "out_features": layer.out_features,
                "bias": layer.bias is not None,
                "activation_function": ACTIVATION_CLASS[layer.activation],
                "key_name": "token_embeddings" if layer.before_pooling else "sentence_embedding",
            },
        )
        import torch

        tensors = {"linear.weight": layer.weight.detach().float().cpu().contiguous()}
        if layer.bias is not None:
            tensors["linear.bias"] = layer.bias.detach().float().cpu().contiguous()
        torch.save(tensors, root / folder / "pytorch_model.bin")
    modules.append(
        {"idx": pooling_idx, "name": str(pooling_idx), "path": f"{pooling_idx}_Pooling",
         "type": "sentence_transformers.models.Pooling"}
    )
    dump(
        f"{pooling_idx}_Pooling/config.json",
        {"word_embedding_dimension": int(checkpoint.config.hidden_size if n_before == 0 else
                                         checkpoint.dense[n_before - 1].out_features),
         **{flag: POOLING_FLAGS.get(flag) == checkpoint.pooling for flag in _ALL_POOLING_FLAGS}},
    )
    if checkpoint.normalize:
        idx = len(modules)
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (root / f"{idx}_Normalize").mkdir(exist_ok=True)
    modules.sort(key=lambda m: m["idx"])
    dump("modules.json", modules)
    dump("sentence_bert_config.json", {"max_seq_length": checkpoint.max_seq_length, "do_lower_case": False})

    config = checkpoint.config.to_dict()
    config["architectures"] = ["GPTNeoModel"]
    dump("config.json", config)
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.transformer_state.items()}
    torch.save(state, root / "pytorch_model.bin")
    save_tokenizer(checkpoint.tokenizer, root)
    return root


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, root: Path) -> None:
    """tokenizer.json + the legacy vocab.json/merges.txt/special_tokens_map.json of the Hub repo."""
    tokenizer.save_pretrained(str(root))
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (root / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token,
               "unk_token": tokenizer.unk_token, "pad_token": tokenizer.pad_token or PAD_FALLBACK}
    (root / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
