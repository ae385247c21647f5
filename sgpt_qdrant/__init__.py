"""SGPT sentence embeddings for retrieval: a faithful runtime, LlamaIndex glue, Qdrant ingest.

Exports are resolved lazily (PEP 562), so ``import sgpt_qdrant.checkpoint`` or the trainer's
``--help`` do not pay for torch-free parts they never use, nor for LlamaIndex.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

#: public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "DEFAULT_MODEL": (".checkpoint", "DEFAULT_MODEL"),
    "Checkpoint": (".checkpoint", "Checkpoint"),
    "CheckpointError": (".checkpoint", "CheckpointError"),
    "load_checkpoint": (".checkpoint", "load"),
    "save_checkpoint": (".checkpoint", "save"),
    "SGPTEmbedding": (".embedding", "SGPTEmbedding"),
    "Encoder": (".engine", "Encoder"),
    "SGPTModel": (".model", "SGPTModel"),
    "TruncationWarning": (".tokens", "TruncationWarning"),
    "EmptyTextWarning": (".tokens", "EmptyTextWarning"),
    "SGPTNodeParser": (".node_parser", "SGPTNodeParser"),
    "SGPTFileReader": (".ingest.formats_llama", "SGPTFileReader"),
    "export_fastembed": (".fastembed_export", "export_fastembed"),
    "FastEmbedError": (".fastembed_register", "FastEmbedError"),
    "FastEmbedModel": (".fastembed_register", "FastEmbedModel"),
    "register_fastembed": (".fastembed_register", "register_fastembed"),
    "ingest_paths": (".ingest.pipeline", "ingest_paths"),
    "IngestOptions": (".ingest.pipeline", "IngestOptions"),
    "RayOptions": (".ingest.distributed", "RayOptions"),
    "EdgeClient": (".ingest.edge", "EdgeClient"),
    "EdgeVectorStore": (".ingest.vector_store", "EdgeVectorStore"),
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from .checkpoint import DEFAULT_MODEL, Checkpoint, CheckpointError
    from .checkpoint import load as load_checkpoint
    from .checkpoint import save as save_checkpoint
    from .embedding import SGPTEmbedding
    from .engine import Encoder
    from .node_parser import SGPTNodeParser
    from .ingest.formats_llama import SGPTFileReader
    from .fastembed_export import export_fastembed
    from .fastembed_register import FastEmbedError, FastEmbedModel, register_fastembed
    from .model import SGPTModel
    from .tokens import EmptyTextWarning, TruncationWarning
    from .ingest.distributed import RayOptions
    from .ingest.edge import EdgeClient
    from .ingest.vector_store import EdgeVectorStore
    from .ingest.pipeline import IngestOptions, ingest_paths

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
