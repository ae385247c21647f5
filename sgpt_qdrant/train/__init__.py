"""``sgpt-train``: the NLI fine-tune that produced SGPT-125M-mean-nli-linearthenpool5, in plain torch.

Exports resolve lazily (PEP 562), so ``sgpt-train --help`` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

#: public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "DEFAULT_BASE": (".config", "DEFAULT_BASE"),
    "TrainConfig": (".config", "TrainConfig"),
    "DataError": (".data", "DataError"),
    "load": (".data", "load"),
    "read_file": (".data", "read_file"),
    "triplets_from_pairs": (".data", "triplets_from_pairs"),
    "NoDuplicatesBatcher": (".batching", "NoDuplicatesBatcher"),
    "read_sts": (".evaluate", "read_sts"),
    "similarity_metrics": (".evaluate", "similarity_metrics"),
    "start_checkpoint": (".base", "start_checkpoint"),
    "Trainer": (".loop", "Trainer"),
    "TrainResult": (".loop", "TrainResult"),
    "train": (".loop", "train"),
    "mnrl": (".loss", "mnrl"),
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .base import start_checkpoint
    from .batching import NoDuplicatesBatcher
    from .config import DEFAULT_BASE, TrainConfig
    from .data import DataError, load, read_file, triplets_from_pairs
    from .evaluate import read_sts, similarity_metrics
    from .loop import Trainer, TrainResult, train
    from .loss import mnrl

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
