"""``sgpt-train``: the NLI fine-tune that produced SGPT-125M-mean-nli-linearthenpool5, in plain torch."""

from .base import DEFAULT_BASE, start_checkpoint
from .batching import NoDuplicatesBatcher
from .data import DataError, load, read_file, triplets_from_pairs
from .evaluate import read_sts, similarity_metrics
from .loop import TrainConfig, Trainer, TrainResult, train
from .loss import mnrl

__all__ = [
    "DEFAULT_BASE", "DataError", "NoDuplicatesBatcher", "TrainConfig", "TrainResult", "Trainer", "load",
    "mnrl", "read_file", "read_sts", "similarity_metrics", "start_checkpoint", "train", "triplets_from_pairs",
]
