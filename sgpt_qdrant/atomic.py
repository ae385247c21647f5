"""Files and folders published whole or not at all: written under a temporary name beside the
target (the same file system, so the rename is atomic), flushed to disk, then renamed into place.

A crash or Ctrl-C at any moment leaves either the old target or the new one, never a half file
that a later run would trust; what a crash does leave is a temporary name, which nothing reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') bytes to disk; best effort where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and Windows folders) do not fsync a folder
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file under ``folder``, then the folders themselves, flushed to disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def write_text(target: Path, text: str, encoding: str = "utf-8") -> None:
    """``target`` replaced by ``text`` in one rename."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        publish_file(Path(tmp), target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def publish_file(staged: Path, target: Path) -> None:
    """Rename the finished file ``staged`` over ``target`` (after flushing it)."""
    _fsync(staged)
    os.replace(staged, target)
    _fsync(target.parent)


def publish_folder(staged: Path, target: Path, replace: bool = True) -> None:
    """Rename the finished folder ``staged`` to ``target``.

    ``replace``: an existing ``target`` is moved aside, the new one renamed in, the old one
    deleted. Otherwise the first writer wins: a ``target`` already in place (which only a
    publish makes, so it is complete) is kept and ``staged`` is left for the caller to drop,
    as when two processes build the same cache entry at once.
    """
    fsync_tree(staged)
    if not replace:
        try:
            os.replace(staged, target)
        except OSError:  # a non-empty folder is there: another process got there first
            if not (target.is_dir() and any(target.iterdir())):
                raise
        _fsync(target.parent)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    os.replace(staged, target)
    _fsync(target.parent)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _remove_stale(parent: Path) -> None:
    """Staging folders (``.tmp-<pid>-*``) of processes that are gone: a killed build left them."""
    for stale in parent.glob(".tmp-*"):
        pid = stale.name[len(".tmp-"):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def staging_folder(parent: Path, name: str | None = None) -> Iterator[Path]:
    """An empty folder in ``parent`` to build into, removed on exit if it is still there.

    ``name``: a fixed name, for a single writer (what a crashed run left there is cleared first);
    otherwise a unique ``.tmp-*`` name, so concurrent writers never share one.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    if name is None:
        _remove_stale(parent)
        folder = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        folder.chmod(0o777 & ~umask)  # mkdtemp's 0700 would be published: others could not read it
    else:
        folder = parent / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
