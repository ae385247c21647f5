"""Use an exported SGPT folder from FastEmbed and qdrant-client's inference, without torch.

A folder built by :func:`sgpt_qdrant.fastembed_export.export_fastembed` (or
``sgpt-export-fastembed``) holds the whole model as ONNX (GPT-Neo + the per-token Dense stack,
token vectors out) and a tokenizer FastEmbed configures the reference's way. FastEmbed then
mean-pools over the attention mask, exactly as the reference pools. It only has to be told the
model's name, dimension and pooling once per process: that is :func:`register_fastembed`.

Nothing here imports torch or transformers, so a query service needs only fastembed (ONNX
Runtime + tokenizers) and qdrant-client::

    from qdrant_client import QdrantClient, models
    from sgpt_qdrant.fastembed_register import register_fastembed

    sgpt = register_fastembed("sgpt-fastembed")
    client.query_points("documents", using="text-dense",
                        query=models.Document(text="...", model=sgpt.name, options=sgpt.options))

FastEmbed finds a custom model's files by the ``specific_model_path`` option (it would
otherwise look for them on the Hub), hence ``options``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What the exporter writes; the registration reads META for the name and dimension.
MODEL_FILE = "model.onnx"
META_FILE = "sgpt_fastembed.json"
REQUIRED_FILES = (MODEL_FILE, META_FILE, "tokenizer.json", "tokenizer_config.json", "config.json",
                  "special_tokens_map.json")
#: Bumped when the folder layout or the graph changes; part of the export's cache key.
#: 2: META records the sha256 of every file and a digest of its own fields.
FORMAT_VERSION = 2
#: The files whose sha256 META records (META itself is covered by its "digest" field).
HASHED_FILES = tuple(f for f in REQUIRED_FILES if f != META_FILE)
#: The command that builds a folder, named in every "missing export" message.
BUILD_HINT = "build it with `sgpt-export-fastembed FOLDER --model CHECKPOINT` (needs the torch install once)"


class FastEmbedError(ValueError):
    """An export that cannot be used (or built) as asked; the message says what to do."""


@dataclass(frozen=True)
class FastEmbedModel:
    """A registered export: pass ``name`` and ``options`` to ``models.Document`` or ``TextEmbedding``."""

    name: str
    path: Path
    dim: int
    options: dict[str, Any] = field(default_factory=dict)

    def text_embedding(self, **kwargs: Any) -> Any:
        """A ``fastembed.TextEmbedding`` for this export (kwargs go to its constructor)."""
        from fastembed import TextEmbedding

        return TextEmbedding(model_name=self.name, **{**self.options, **kwargs})


_registered: dict[str, FastEmbedModel] = {}


def read_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The export's own description; a missing or foreign folder is a :class:`FastEmbedError`."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FastEmbedError(f"{path}: no SGPT FastEmbed export here; {BUILD_HINT}")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise FastEmbedError(f"{path}: not a complete SGPT FastEmbed export (missing {', '.join(missing)}); "
                             f"{BUILD_HINT}")
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FastEmbedError(f"{path / META_FILE}: unreadable ({exc}); {BUILD_HINT}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise FastEmbedError(f"{path}: export format {meta.get('format')!r}, this version reads "
                             f"{FORMAT_VERSION}; {BUILD_HINT}")
    return meta


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of each exported file (what META records at export and registration checks)."""
    out = {}
    for name in HASHED_FILES:
        with open(folder / name, "rb") as f:
            out[name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of META's fields other than the digest itself: a hand-edited dim or name shows."""
    fields = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def changed_files(folder: str | os.PathLike[str], meta: dict[str, Any]) -> list[str]:
    """The files of an export that differ from what was exported (empty: intact)."""
    path = Path(folder)
    changed = [META_FILE] if meta.get("digest") != meta_digest(meta) else []
    recorded = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    return changed + [n for n, h in file_hashes(path).items() if recorded.get(n) != h]


def check_intact(folder: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """:class:`FastEmbedError` naming the files changed since the export (a swapped model.onnx,
    an edited tokenizer.json or dim would otherwise load and answer wrongly)."""
    changed = changed_files(folder, meta)
    if changed:
        raise FastEmbedError(f"{folder}: {', '.join(changed)} changed since the export (sha256 differs from "
                             f"what {META_FILE} records); export again into this folder to repair it: "
                             "`sgpt-export-fastembed FOLDER --model CHECKPOINT`")


def register_fastembed(folder: str | os.PathLike[str], name: str | None = None) -> FastEmbedModel:
    """Make the export in ``folder`` known to FastEmbed (and so to qdrant-client) as ``name``.

    Once per process; calling it again with the same name is harmless. ``name`` defaults to the
    one recorded at export time (the checkpoint's Hub id or folder name).
    """
    path = Path(folder).expanduser().resolve()
    meta = read_meta(path)
    check_intact(path, meta)
    name = name or str(meta["name"])
    model = FastEmbedModel(name, path, int(meta["dim"]), {"specific_model_path": str(path)})
    known = _registered.get(name.lower())
    if known is not None:
        if known.dim != model.dim:
            raise FastEmbedError(f"{name}: already registered with dimension {known.dim} in this process; "
                                 f"register {path} under another name")
        _registered[name.lower()] = model
        return model
    try:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType
    except ImportError:
        raise FastEmbedError("fastembed is not installed: pip install 'sgpt-qdrant[fastembed]' "
                             "(or pip install fastembed)") from None
    if any(m["model"].lower() == name.lower() for m in TextEmbedding.list_supported_models()):
        raise FastEmbedError(f"{name}: FastEmbed already has a model of this name; pass another name")
    TextEmbedding.add_custom_model(
        model=name,
        pooling=PoolingType.MEAN,  # over the attention mask: the reference's masked mean
        normalization=False,  # the reference returns raw vectors (cosine does not care)
        sources=ModelSource(hf=name),  # never fetched: options carry specific_model_path
        dim=model.dim,
        model_file=MODEL_FILE,
        description=f"SGPT ({meta.get('source', '?')}) exported by sgpt-qdrant",
        license="see the source checkpoint",
        size_in_gb=round((path / MODEL_FILE).stat().st_size / 2**30, 3),
    )
    _registered[name.lower()] = model
    return model


def registered(name: str) -> FastEmbedModel:
    """The export registered as ``name`` in this process, or a one-line error naming what to do."""
    model = _registered.get(name.lower())
    if model is None:
        known = ", ".join(sorted(m.name for m in _registered.values())) or "none"
        raise FastEmbedError(f"{name}: no SGPT export registered under this name (registered: {known}); "
                             "call register_fastembed(FOLDER, name=...) first")
    return model
