"""SGPT sentence embeddings for retrieval: a faithful runtime, LlamaIndex glue, Qdrant ingest."""

from .checkpoint import DEFAULT_MODEL, Checkpoint, CheckpointError
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .embedding import SGPTEmbedding
from .engine import Encoder
from .model import SGPTModel

__all__ = [
    "DEFAULT_MODEL",
    "Checkpoint",
    "CheckpointError",
    "Encoder",
    "SGPTEmbedding",
    "SGPTModel",
    "load_checkpoint",
    "save_checkpoint",
]
__version__ = "0.1.0"
