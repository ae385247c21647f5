"""A model's identity by what it is made of, for ``ingest_version``: replaced weights re-embed.

The ``--model`` string says where a model is, not what it is: weights replaced in the same
folder (or a new revision of a Hub id) must make every document "changed". The fingerprint is a
hash over the model folder's weight, config and tokenizer files (their relative names and the
SHA-256 of their bytes). Hashing a 500 MB model takes a second or two, so each file's hash is
cached by (path, size, mtime, inode) in ``file-hashes.json`` of the project's cache folder
(:func:`sgpt_qdrant.user_cache.cache_root`); a Hub snapshot's files are links to blobs named by
their SHA-256, which is used as is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from sgpt_qdrant import atomic
from sgpt_qdrant.user_cache import cache_root

#: Files that make a model what it is (a README or .gitattributes change re-embeds nothing).
MODEL_SUFFIXES = frozenset({".json", ".txt", ".safetensors", ".bin", ".model", ".pt", ".pth"})
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _cache_path() -> Path:
    return cache_root() / "file-hashes.json"


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _file_hash(path: Path, cache: dict) -> tuple[str, bool]:
    """(sha256 hex, whether it was computed now)."""
    real = path.resolve()
    if real.parent.name == "blobs" and _SHA256.fullmatch(real.name):  # Hub cache: content-addressed
        return real.name, False
    st = real.stat()
    key = f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    if key in cache:
        return cache[key], False
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    return cache[key], True


def model_fingerprint(folder: str | os.PathLike[str]) -> str:
    """SHA-256 (hex, 32 chars) over the model files' names and contents; cached per file."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    cache_file = _cache_path()
    cache = _load_cache(cache_file)
    total = hashlib.sha256()
    changed = False
    for p in files:
        digest, new = _file_hash(p, cache)
        changed |= new
        total.update(f"{p.relative_to(root).as_posix()}\0{digest}\n".encode())
    if changed:
        try:  # best effort: without a cache the next run hashes again
            while len(cache) > 4096:  # oldest first: bounded whatever the number of models seen
                cache.pop(next(iter(cache)))
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(cache_file, json.dumps(cache))
        except OSError:
            pass
    return total.hexdigest()[:32]
