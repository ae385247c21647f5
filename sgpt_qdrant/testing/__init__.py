"""Test support: random stand-ins for the Hub checkpoint, and a stand-in Qdrant REST server.

Importable by the tests, the benchmarks and anyone trying the project without the Hub; the core
library never imports it (an import-linter contract in pyproject.toml). Names resolve lazily, so
``from sgpt_qdrant.testing.standin import StandIn`` pays for no torch.

- :mod:`.random_model`: ``write_random_checkpoint`` and friends; ``python -m sgpt_qdrant.testing DIR``.
- :mod:`.standin`: ``StandIn``, the part of Qdrant's REST API that ``QdrantClient(url=...)`` uses,
  with scripted faults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "SHAPE_125M": ".random_model",
    "SHAPE_TINY": ".random_model",
    "gpt2_tokenizer": ".random_model",
    "random_checkpoint": ".random_model",
    "write_random_checkpoint": ".random_model",
    "main": ".random_model",
    "StandIn": ".standin",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from .random_model import SHAPE_125M, SHAPE_TINY, gpt2_tokenizer, main, random_checkpoint, write_random_checkpoint
    from .standin import StandIn

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
