"""``sgpt-store``: migrate a local-mode store to the embedded Edge store, copy collections between stores.

``sgpt-store migrate --qdrant-path DIR`` converts, in place, a folder written by qdrant-client's
local mode (earlier versions of sgpt-ingest): nothing is re-embedded and nothing stored in it is
run (:mod:`ingest.legacy_local`). The Edge store is written to the sibling ``.DIR.migrating``,
verified, then swapped with DIR in one atomic rename (Linux ``renameat2(RENAME_EXCHANGE)``; two
renames elsewhere) and the legacy files end up in ``DIR.local-mode-backup``. A crash or Ctrl-C at
any point leaves DIR the old store or the new complete one; running the command again finishes.

``sgpt-store copy`` copies one collection Edge → server, server → Edge (or local mode → either),
verified by count and a sample (:func:`ingest.copy.copy_collection`).

Exit status: 0 done, 2 an error (one line on stderr), 130 interrupted (Ctrl-C). Everything printed
has the API key (``QDRANT_API_KEY``) removed. ``--help`` imports neither qdrant-client nor torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..atomic import _fsync as _fsync_dir, fsync_tree
from . import client as qc
from . import schema
from .cli_options import path_option, store_target, timeout_option, url_option

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
BACKUP_SUFFIX = ".local-mode-backup"
_secrets: list[str | None] = []


class MigrationError(qc.StoreError):
    """A store that cannot be migrated or copied as asked: one line, says what to do."""


def _say(message: str, err: bool = True) -> None:
    click.echo(qc.redact(message, _secrets), err=err)


def _err(message: str) -> None:
    _say(f"sgpt-store: {message}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Move embedded Qdrant stores: migrate a local-mode store to Qdrant Edge, copy collections
    between the embedded store and a Qdrant server.

    Exit status: 0 done; 2 an error (one line on stderr); 130 interrupted (Ctrl-C): run the same
    command again to finish.
    """


# -- paths of a migration -----------------------------------------------------------------


def migration_paths(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(store, the sibling the new store is written to, the backup the legacy files move to)."""
    store = Path(path).absolute()
    return store, store.with_name(f".{store.name}.migrating"), store.with_name(store.name + BACKUP_SUFFIX)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(a))


def _swap_in(store: Path, new: Path, backup: Path) -> None:
    """The verified store at ``new`` becomes ``store``; the legacy files go to ``backup``."""
    fsync_tree(new)  # on disk before it replaces anything: a power cut leaves the old store or the new one
    if _exchange(new, store):
        _fsync_dir(store.parent)  # store = Edge, new = the legacy files
        os.rename(new, backup)
    else:
        os.rename(store, backup)  # a crash here: the next run sees backup + new and finishes
        os.rename(new, store)
    _fsync_dir(store.parent)


def _finish_interrupted(store: Path, new: Path, backup: Path) -> str | None:
    """A swap a crash cut short: finish it. Returns what was done, or None when none was pending."""
    if store.exists() and not qc.legacy_local_store(store) and new.exists() and qc.legacy_local_store(new):
        if backup.exists():
            raise MigrationError(f"{backup} exists: the legacy files of {store} are in {new}; move one of them away")
        os.rename(new, backup)  # crashed between the exchange and this rename
        _fsync_dir(store.parent)
        return f"finished an interrupted migration: {store} is the Edge store, the local-mode files are in {backup}"
    if not store.exists() and backup.exists() and qc.legacy_local_store(backup) and new.exists() \
            and not qc.legacy_local_store(new):
        os.rename(new, store)  # crashed between the two renames (no atomic exchange here)
        _fsync_dir(store.parent)
        return f"finished an interrupted migration: {store} is the Edge store, the local-mode files are in {backup}"
    return None


def migrate_store(path: str | os.PathLike, *, batch: int = 256, progress: Any = None) -> dict[str, Any]:
    """Convert the local-mode store at ``path`` to an Edge store in place. A summary dict."""
    from .copy import copy_collection
    from .legacy_local import LegacyLocalStore

    started = time.perf_counter()
    store, new, backup = migration_paths(path)
    summary: dict[str, Any] = {"path": str(store), "backup": str(backup), "collections": [], "points": 0}
    done = _finish_interrupted(store, new, backup)
    if done:
        summary.update(status="finished", message=done, seconds=time.perf_counter() - started)
        return summary
    if not store.exists():
        raise MigrationError(f"{store}: no store here (nothing to migrate)")
    if not qc.legacy_local_store(store):
        message = f"{store}: not a local-mode store (no meta.json); nothing to migrate" + (
            f" (the local-mode files of an earlier migration are in {backup})" if backup.exists() else "")
        summary.update(status="nothing to do", message=message, seconds=time.perf_counter() - started)
        return summary
    if backup.exists():
        raise MigrationError(f"{backup} exists: the legacy files would go there; move it away first")
    if not os.access(store.parent, os.W_OK):
        raise MigrationError(f"{store.parent}: not writable; the Edge store is written next to {store.name} before it "
                      "replaces it: copy the store somewhere writable, or use sgpt-store copy --to-path")
    with LegacyLocalStore(store) as legacy:  # holds local mode's lock until the swap is done
        if new.exists() and qc.legacy_local_store(new):
            raise MigrationError(f"{new}: a local-mode store where the new store is built; move it away")
        with _open_edge(new) as target:
            for name in legacy.collection_names():
                if progress is not None:
                    progress.start(name, legacy.count(name).count)
                report = copy_collection(legacy, target, name, batch=batch,
                                         on_progress=progress.update if progress is not None else None)
                if progress is not None:
                    progress.close()
                summary["collections"].append(report.to_dict())
                summary["points"] += report.points
        _swap_in(store, new, backup)
    message = (f"migrated {store} to the Edge store: {len(summary['collections'])} collections, "
               f"{summary['points']} points copied and verified, nothing re-embedded; the local-mode files are in "
               f"{backup} (delete it once you are satisfied)")
    summary.update(status="migrated", message=message, seconds=time.perf_counter() - started)
    return summary


@contextlib.contextmanager
def _open_edge(path: Path) -> Iterator[Any]:
    """The embedded store at ``path`` for writing; one opened on a half-written folder is reused."""
    try:
        with qc.open_client(path=str(path)) as client:
            yield client
    except qc.StoreError as exc:
        raise MigrationError(f"{exc}; if {path.name} is a half-written migration, remove it and run this again") from None


# -- opening stores for copy ----------------------------------------------------------------


@contextlib.contextmanager
def open_store(store: qc.StoreTarget, *, role: str, collection: str) -> Iterator[Any]:
    """A copy source or target: a server; an embedded folder: the Edge store, or as a source a
    local-mode store read safely. A local-mode target is refused with the migrate command."""
    from .legacy_local import LegacyLocalStore

    if not store.embedded:
        with store.open() as client:
            try:
                client.collection_exists(collection)  # first contact: a bad URL or key is one line now
            except Exception as exc:  # noqa: BLE001
                raise qc.setup_error(exc, store.where()) from None
            yield client
        return
    folder = Path(store.folder)
    if qc.legacy_local_store(folder):
        if role == "target":
            raise MigrationError(f"{folder}: a local-mode store (an earlier sgpt-qdrant) cannot be copied into; migrate it "
                          f"once with: sgpt-store migrate --qdrant-path {folder}")
        with LegacyLocalStore(folder) as legacy:
            yield legacy
        return
    if role == "source" and not folder.exists():
        raise MigrationError(f"--from-path {folder}: no store here")
    with store.open(create=role == "target") as client:
        yield client


def copy_stores(*, source: qc.StoreTarget, target: qc.StoreTarget, collection: str, to_collection: str | None,
                batch: int = 256, progress: Any = None) -> dict[str, Any]:
    """Copy ``collection`` from the ``source`` store to the ``target`` one (as ``to_collection``). A summary dict."""
    from .copy import copy_collection

    if source.embedded and target.embedded and Path(source.folder).resolve() == Path(target.folder).resolve():
        raise MigrationError(f"--from-path and --to-path are the same store ({target.folder}); copy to another folder")
    if not source.embedded and not target.embedded and source.where() == target.where() \
            and (to_collection or collection) == collection:
        raise MigrationError(f"--from-url and --to-url are the same collection ({collection!r}); pass --to-collection")
    with open_store(source, role="source", collection=collection) as src, \
            open_store(target, role="target", collection=to_collection or collection) as dst:
        if progress is not None and src.collection_exists(collection):
            progress.start(collection, src.count(collection, exact=True).count)
        report = copy_collection(src, dst, collection, target_name=to_collection, batch=batch,
                                 on_progress=progress.update if progress is not None else None)
    if progress is not None:
        progress.close()
    summary = report.to_dict()
    summary["message"] = (f"copied {report.points} points of {collection!r} from {report.source} to "
                          f"{report.target_collection!r} at {report.target}, verified by count and {report.sampled} "
                          f"sampled points in {report.seconds:.1f}s")
    return summary


# -- the commands ----------------------------------------------------------------------------


class _Bar:
    """A tqdm bar per collection on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def start(self, name: str, total: int) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="point", desc=name, file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run(work, *, as_json: bool, quiet: bool, interrupted: str) -> int:
    """Run ``work(progress)``: print its summary; one-line errors (exit 2), Ctrl-C (exit 130)."""
    import warnings

    from .copy import CopyError
    from .upload import UploadError

    _secrets[:] = [os.environ.get(qc.API_KEY_ENV)]
    bar = _Bar(enabled=not quiet and not as_json and sys.stderr.isatty())
    show_warning = warnings.showwarning  # library warnings as one redacted line each
    warnings.showwarning = lambda message, *args, **kwargs: _err(f"warning: {message}")
    try:
        summary = work(bar)
    except KeyboardInterrupt:
        bar.close()
        _err(f"interrupted; {interrupted}")
        return EXIT_INTERRUPTED
    except (qc.StoreError, CopyError, UploadError, ValueError, OSError) as exc:
        bar.close()
        _err(f"error: {exc}")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless asked
        bar.close()
        if os.environ.get("SGPT_STORE_DEBUG"):
            raise
        _err(f"error: {qc.describe(exc)}")
        return EXIT_ERROR
    finally:
        warnings.showwarning = show_warning
    if as_json:
        _say(json.dumps(summary, sort_keys=True), err=False)
    elif not quiet:
        _err(summary["message"])
    return 0


@cli.command()
@path_option(type=click.Path(path_type=str),
             help="The store folder written by qdrant-client's local mode (an earlier sgpt-ingest).")
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True, help="Points per write.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary; errors still go to stderr.")
def migrate(qdrant_path, batch, as_json, quiet):
    """Convert a local-mode store folder to the embedded Qdrant Edge store, in place.

    Vectors and payloads are copied (nothing is re-embedded; nothing stored in the old folder is
    run), verified by count and a sample, then the new store takes the folder's place and the old
    files move to FOLDER.local-mode-backup. Interrupted at any point, the folder holds the old
    store or the new one; running the command again finishes.
    """
    store, new, backup = migration_paths(qdrant_path)
    sys.exit(_run(lambda bar: migrate_store(qdrant_path, batch=batch, progress=bar), as_json=as_json, quiet=quiet,
                  interrupted=f"{store} is unchanged (or already the new store): run the same command again "
                              "to finish"))


@cli.command()
@path_option("--from-path", type=click.Path(path_type=str), default=None,
             help="Source: an embedded store folder (Edge, or a local-mode one, read without running it).")
@url_option("--from-url", envvar=None, help="Source: a Qdrant server URL.")
@path_option("--to-path", type=click.Path(path_type=str), default=None,
             help="Target: an embedded store folder (created when missing).")
@url_option("--to-url", envvar=None, help="Target: a Qdrant server URL.")
@click.option("--collection", default=schema.DEFAULT_COLLECTION, show_default=True, help="Collection to copy.")
@click.option("--to-collection", default=None, help="Name in the target [default: the same].")
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True, help="Points per request.")
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary; errors still go to stderr.")
def copy(from_path, from_url, to_path, to_url, collection, to_collection, batch, timeout, as_json, quiet):
    """Copy one collection between the embedded store and a Qdrant server (either way).

    The target gets the same vectors (dense and sparse) and keyword payload indexes; points
    keep their ids, so running it again after a crash finishes the copy. Verified by count and
    a sample of points (ids, payloads, vectors). The API key comes from env QDRANT_API_KEY only.
    """
    def work(bar):
        if (from_path is None) == (from_url is None):
            raise MigrationError("give exactly one of --from-path and --from-url")
        if (to_path is None) == (to_url is None):
            raise MigrationError("give exactly one of --to-path and --to-url")
        source, target = store_target(from_path, from_url, timeout=timeout), store_target(to_path, to_url, timeout=timeout)
        _secrets.append(source.api_key)
        return copy_stores(source=source, target=target, collection=collection, to_collection=to_collection,
                           batch=batch, progress=bar)

    sys.exit(_run(work, as_json=as_json, quiet=quiet,
                  interrupted="the points copied so far are consistent: run the same command again to finish"))


def main() -> None:
    cli()
