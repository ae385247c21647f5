"""Build the folder FastEmbed loads: the whole SGPT model as ONNX plus a reference tokenizer.

The graph is GPT-Neo + the per-token Dense stack in fp32, inputs ``input_ids`` and
``attention_mask``, output the token vectors after the last Dense layer (padding positions
zeroed, so no pooling can pick up what a pad position computed). FastEmbed mean-pools them over
the attention mask, which is the reference's pooling, so the vectors equal
:class:`~sgpt_qdrant.Encoder`'s fp32 vectors to float rounding.

The tokenizer is the checkpoint's own GPT-2 BPE with what the reference does around it written
into the files, because FastEmbed calls ``encode_batch`` with no options: a normaliser that
strips surrounding whitespace as Python's ``str.strip()`` does, no BOS/EOS (a template that adds
nothing), truncation at ``max_seq_length`` (``model_max_length``) and right padding with the pad
id (``pad_token`` / ``pad_token_id``).

Only mean pooling of per-token Dense layers without a Normalize module is representable this
way; anything else is refused with one line. Folders are cached by a hash of the weights, the
tokenizer and the library versions, and written atomically, like the int8 ONNX export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import atomic
from . import checkpoint as ckpt
from .fastembed_register import (FORMAT_VERSION, META_FILE, MODEL_FILE, FastEmbedError, changed_files, file_hashes,
                                 meta_digest, read_meta)
from .model import SGPTModel
from .runtime.cache import versions, weights_key
from .runtime.ort import export_graph
from .user_cache import cache_root

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

#: Exactly the characters Python's ``str.strip()`` removes (``str.isspace``), spelled out because
#: the tokenizers' regex engine (Oniguruma) has its own idea of ``\s``; ``\A``/``\z`` anchor at
#: the ends of the text (``^``/``$`` would be line anchors there).
_SPACE = (r"\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
          r"\x{202f}\x{205f}\x{3000}")
STRIP_PATTERN = rf"\A[{_SPACE}]+|[{_SPACE}]+\z"


class TokenVectors(nn.Module):
    """``(input_ids, attention_mask) -> (batch, length, dim)`` token vectors after the Dense stack."""

    def __init__(self, model: SGPTModel) -> None:
        super().__init__()
        self.transformer = model.transformer
        self.dense = nn.ModuleList(layer for layer in model.dense)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids)
        for layer in self.dense:
            hidden = layer(hidden)
        return hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)


def check_representable(checkpoint: ckpt.Checkpoint) -> None:
    """Refuse what FastEmbed's mean pooling over per-token vectors cannot reproduce."""
    where = checkpoint.source or "checkpoint"
    use = "; embed with Encoder / sgpt-ingest instead (torch)"
    if checkpoint.pooling != "mean":
        raise FastEmbedError(f"{where}: {checkpoint.pooling} pooling cannot be exported for FastEmbed "
                             f"(its custom models pool by plain mean over the attention mask){use}")
    if any(not layer.before_pooling for layer in checkpoint.dense):
        raise FastEmbedError(f"{where}: a Dense layer after pooling cannot be exported for FastEmbed "
                             f"(the graph must end with per-token vectors){use}")
    if checkpoint.normalize:
        raise FastEmbedError(f"{where}: a Normalize module is not exported for FastEmbed{use}")
    size = 4 * (sum(t.numel() for t in checkpoint.transformer_state.values())
                + sum(d.weight.numel() + (0 if d.bias is None else d.bias.numel()) for d in checkpoint.dense))
    if size >= 2**31:  # protobuf's limit; larger graphs need external data files, not handled here
        raise FastEmbedError(f"{where}: {size / 2**30:.1f} GiB of fp32 weights do not fit one ONNX file (2 GiB); "
                             f"only models up to about 500M parameters are exported for FastEmbed{use}")
    config = checkpoint.config
    if "local" in config.attention_layers and int(config.window_size) < checkpoint.max_seq_length:
        raise FastEmbedError(f"{where}: local attention window {config.window_size} is shorter than "
                             f"max_seq_length {checkpoint.max_seq_length}; not exported for FastEmbed{use}")


def fastembed_tokenizer(checkpoint: ckpt.Checkpoint) -> Tokenizer:
    """The checkpoint's tokenizer with the reference's stripping, no specials, truncation, padding."""
    from tokenizers import Regex, normalizers, processors

    tok = checkpoint.tokenizer.backend_tokenizer
    tok = type(tok).from_str(tok.to_str())  # a copy: the checkpoint's own stays as it is
    strip = normalizers.Replace(Regex(STRIP_PATTERN), "")
    tok.normalizer = strip if tok.normalizer is None else normalizers.Sequence([strip, tok.normalizer])
    tok.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    tok.enable_truncation(checkpoint.max_seq_length, direction="right")
    pad = checkpoint.tokenizer.convert_ids_to_tokens(checkpoint.pad_id)
    tok.enable_padding(direction="right", pad_id=checkpoint.pad_id, pad_token=pad)
    return tok


def _versions() -> str:
    return versions(("tokenizers", "tokenizers")) + f";format={FORMAT_VERSION}"


def export_key(checkpoint: ckpt.Checkpoint, model: SGPTModel) -> str:
    """Cache key: weights, tokenizer, length limit, pad id and library versions."""
    tok = hashlib.blake2b(checkpoint.tokenizer.backend_tokenizer.to_str().encode(), digest_size=8).hexdigest()
    return weights_key(model, "fastembed", _versions(), tok, STRIP_PATTERN, str(checkpoint.max_seq_length),
                       str(checkpoint.pad_id))


def default_name(source: str) -> str:
    """A Hub id is its own name; a local folder is ``sgpt/<folder name>``."""
    if not source:
        return "sgpt/model"
    path = Path(source).expanduser()
    if not path.exists() and source.count("/") == 1:
        return source
    return f"sgpt/{path.resolve().name}"


def _write_folder(checkpoint: ckpt.Checkpoint, model: SGPTModel, key: str, out: Path) -> None:
    export_graph(TokenVectors(model).float().cpu().eval(), out / MODEL_FILE, "token_embeddings", per_token=True)
    tokenizer = fastembed_tokenizer(checkpoint)
    tokenizer.save(str(out / "tokenizer.json"))
    pad = tokenizer.padding["pad_token"]
    special = {"bos_token": checkpoint.tokenizer.bos_token, "eos_token": checkpoint.tokenizer.eos_token,
               "unk_token": checkpoint.tokenizer.unk_token, "pad_token": pad}

    def dump(name: str, obj: dict) -> None:
        (out / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("special_tokens_map.json", {k: v for k, v in special.items() if v})
    dump("tokenizer_config.json", {"model_max_length": checkpoint.max_seq_length, "pad_token": pad,
                                   "padding_side": "right", "truncation_side": "right",
                                   "add_bos_token": False, "add_eos_token": False,
                                   "tokenizer_class": "GPT2Tokenizer"})
    config = checkpoint.config.to_dict()
    config.update(pad_token_id=checkpoint.pad_id, architectures=["GPTNeoModel"])
    dump("config.json", config)
    meta = {"format": FORMAT_VERSION, "name": default_name(checkpoint.source), "dim": checkpoint.dimension,
            "source": checkpoint.source, "key": key, "max_length": checkpoint.max_seq_length,
            "pad_id": checkpoint.pad_id, "pooling": "mean", "normalization": False, "files": file_hashes(out)}
    dump(META_FILE, {**meta, "digest": meta_digest(meta)})


def _intact(folder: Path, key: str) -> bool:
    """An export of ``key`` whose files are what was exported (a tampered one is rebuilt)."""
    try:
        meta = read_meta(folder)
        return meta.get("key") == key and not changed_files(folder, meta)
    except (FastEmbedError, OSError):
        return False


def _atomic_build(checkpoint: ckpt.Checkpoint, model: SGPTModel, key: str, final: Path) -> None:
    with atomic.staging_folder(final.parent) as tmp:
        _write_folder(checkpoint, model, key, tmp)
        atomic.publish_folder(tmp, final, replace=False)  # another process first: theirs is as good


def export_fastembed(model: str | os.PathLike[str] | ckpt.Checkpoint = ckpt.DEFAULT_MODEL,
                     out: str | os.PathLike[str] | None = None) -> Path:
    """The FastEmbed folder for ``model`` (Hub id, local folder, trainer output or Checkpoint).

    Built once into the cache (``$SGPT_CACHE_DIR/fastembed/<key>``) and reused while the weights,
    tokenizer and library versions stay the same. With ``out``, the folder is also copied there
    (atomically; an existing ``out`` is replaced only if it is an older SGPT export).
    """
    checkpoint = model if isinstance(model, ckpt.Checkpoint) else ckpt.load(model)
    check_representable(checkpoint)
    torch_model = SGPTModel(checkpoint).eval()
    key = export_key(checkpoint, torch_model)
    cached = cache_root() / "fastembed" / key
    if _intact(cached, key):
        log.info("using cached FastEmbed export %s", cached)
    else:
        if cached.exists():  # half-written by an older version, or changed since: rebuilt
            aside = cached.with_name(f".{cached.name}.bad-{os.getpid()}")
            os.replace(cached, aside)
            shutil.rmtree(aside, ignore_errors=True)
        _atomic_build(checkpoint, torch_model, key, cached)
        log.info("exported %s for FastEmbed to %s", checkpoint.source, cached)
    if out is None:
        return cached
    return _copy_out(cached, Path(out).expanduser(), key)


def _copy_out(cached: Path, out: Path, key: str) -> Path:
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / META_FILE).is_file()):
            raise FastEmbedError(f"{out}: exists and is not an SGPT FastEmbed export; choose another folder")
        if _intact(out, key):
            return out
        # an incomplete, older or changed export: replaced below
    with atomic.staging_folder(out.parent) as tmp:
        shutil.copytree(cached, tmp, dirs_exist_ok=True)
        atomic.publish_folder(tmp, out)
    return out
