"""The one folder for everything this project caches: ONNX and FastEmbed exports, model file hashes.

``$SGPT_CACHE_DIR`` if set, else ``sgpt_qdrant`` under ``$XDG_CACHE_HOME`` (``~/.cache``). Never
inside the Hugging Face cache: its snapshots may be read-only and are not ours. No torch here, so
the ingest CLI can ask for it cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SGPT_CACHE_DIR"


def cache_root() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "sgpt_qdrant"
