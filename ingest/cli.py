"""``sgpt-ingest``: click options → :func:`ingest.pipeline.ingest_paths` → progress, summary, exit status.

Exit status: 0 when every readable file is in the store, 1 when some file failed (after all the
others are done; each failure is named on stderr), 2 for a problem found before any work (bad
argument, model, store or collection), 130 when interrupted (Ctrl-C).

Everything printed goes through :func:`_say`, which removes the API key (``QDRANT_API_KEY``)
from the text first, whatever library or server produced it.
"""

from __future__ import annotations

import os
import signal
import sys

#: A Ctrl-C seen by this process (the console script: see _on_sigint). A library that swallows the
#: KeyboardInterrupt (one raised in a destructor or callback is only printed, "Exception ignored")
#: cannot lose it: progress callbacks raise it again and the exit status says 130.
_sigint_seen = False


def _defer_sigint(signum, frame) -> None:
    """Ctrl-C during this module's imports (click, the readers: a fraction of a second): remembered,
    answered by main() with the one line, as a KeyboardInterrupt out of an import cannot be."""
    global _sigint_seen
    _sigint_seen = True


def _on_sigint(signum, frame) -> None:
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


if os.path.basename(sys.argv[0] if sys.argv else "") == "sgpt-ingest" \
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # the console script, not an importer
    signal.signal(signal.SIGINT, _defer_sigint)

import contextlib  # noqa: E402 - after the handler: a Ctrl-C while importing is one line too
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import click  # noqa: E402

from typing import TYPE_CHECKING  # noqa: E402

from . import client as qc  # noqa: E402
from . import schema  # noqa: E402
from .cli_options import store_options, store_target  # noqa: E402
from .read import MAX_FILE_BYTES, ReadOptions  # noqa: E402
from sgpt_qdrant.cli_util import sleeping_cpu_threads  # noqa: E402

if TYPE_CHECKING:  # the pipeline (qdrant-client, LlamaIndex, numpy) is imported when a run starts,
    from .run import Summary  # so --help and a refused option answer at once

EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 1, 2, 130
#: How many documents per category a dry run names on the terminal (all of them with --json).
DRY_RUN_SHOWN = 5

_secrets: list[str | None] = []


def _say(message: str, err: bool = True) -> None:
    click.echo(qc.redact(message, _secrets), err=err)


def _err(message: str) -> None:
    _say(f"sgpt-ingest: {message}")


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class _Progress:
    """Chunks written against the chunks expected: a tqdm bar on a terminal, else a line every
    ``interval`` seconds. Updated after every written batch, so a long file moves it too."""

    def __init__(self, enabled: bool, tty: bool, interval: float) -> None:
        self.bar = None
        self.enabled, self.tty, self.interval = enabled, tty, interval
        self.start = time.perf_counter()
        self.last = self.start

    def message(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(qc.redact(line, _secrets), file=sys.stderr)
        else:
            _say(line)

    def _rate(self, s: Summary) -> float:
        busy = time.perf_counter() - self.start - s.model_load_seconds
        return s.chunks_written / busy if busy > 0 else 0.0

    def update(self, s: Summary) -> None:
        if not self.enabled:
            return
        total = max(s.estimated_chunks(), s.chunks_written)
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="chunk", desc="ingest", file=sys.stderr, dynamic_ncols=True)
                self.bar_load = s.model_load_seconds  # a load before the bar is outside it already
            if s.model_load_seconds > self.bar_load:  # the bar's rate counts embedding, not the model load
                self.bar.start_t += s.model_load_seconds - self.bar_load
                self.bar_load = s.model_load_seconds
            self.bar.total = total
            self.bar.n = s.chunks_written
            self.bar.set_postfix(files=f"{s.files_seen}/{s.files_total}", refresh=False)
            self.bar.refresh()
            return
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        rate = self._rate(s)
        eta = f", about {_duration((total - s.chunks_written) / rate)} left" if rate > 0 else ""
        _say(f"sgpt-ingest: progress: {s.files_seen}/{s.files_total} files, {s.chunks_written}/~{total} chunks "
             f"written, {rate:.1f} chunks/s{eta}; elapsed {_duration(now - self.start)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


#: The summary fits a terminal of this width (prefix included), else it takes two lines.
SUMMARY_WIDTH = 80


def _summary_lines(s: Summary, prefix: str = "sgpt-ingest: ") -> list[str]:
    """What the run did (a dry run: would do), zero counts of rare things left out, wrapped between
    counts to ``SUMMARY_WIDTH`` columns (continuation lines indented)."""
    dry = s.dry_run
    counts = [f"{s.new} new", f"{s.changed} changed", f"{s.unchanged} unchanged"] + [
        f"{n} {what}" for n, what in ((s.skipped, "skipped"), (s.failed, "failed")) if n]
    chunks = [f"would write {s.chunks_written} chunks" if dry else f"{s.chunks_written} chunks written"]
    if s.chunks_deleted:
        chunks.append(f"would delete {s.chunks_deleted}" if dry else f"{s.chunks_deleted} deleted")
    if s.documents_deleted:
        chunks.append(f"would prune {s.documents_deleted} documents" if dry
                      else f"{s.documents_deleted} documents pruned")
    files = [f"{'dry run: ' if dry else ''}{s.files_seen} files:"] + [c + "," for c in counts[:-1]] + [counts[-1] + ";"]
    writes = [c + "," for c in chunks[:-1]] + [f"{chunks[-1]} in {s.seconds:.1f}s"]
    one = " ".join([prefix.rstrip()] + files + writes)
    if len(one) <= SUMMARY_WIDTH:
        return [one]
    lines = [prefix.rstrip()]
    for i, piece in enumerate(files + writes):
        if len(lines[-1]) + 1 + len(piece) > SUMMARY_WIDTH or i == len(files):  # the writes on a line of their own
            lines.append(" " + piece)
        else:
            lines[-1] += " " + piece
    return lines


def _started() -> float:
    """When this process started, on the ``time.perf_counter`` clock: the printed duration is what
    the user waited (imports included), not only the run. Linux reads it; elsewhere, import time."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return time.perf_counter() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


_IMPORTED = time.perf_counter()
#: Set by :func:`main` (a process of its own); ``run()`` called in-process times itself.
_process_started: float | None = None


def _dry_run_lines(s: Summary) -> list[str]:
    from .run import CATEGORIES

    lines = []
    for category in CATEGORIES:
        names = s.documents.get(category, [])
        if not names:
            continue
        shown = ", ".join(names[:DRY_RUN_SHOWN]) + (f" and {len(names) - DRY_RUN_SHOWN} more"
                                                      if len(names) > DRY_RUN_SHOWN else "")
        lines.append(f"  {category} ({len(names)}): {shown}")
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--collection", default=schema.DEFAULT_COLLECTION, show_default=True, help="Qdrant collection name.")
@store_options()
@click.option("--model", envvar="SGPT_MODEL", default=None,
              help="SGPT model: Hub id or local folder (env SGPT_MODEL). [default: "
                   "Muennighoff/SGPT-125M-mean-nli-linearthenpool5]")
@click.option("--device", default=None, help="torch device (cpu, cuda, cuda:1, mps); default: the best available.")
@click.option("--dtype", default=None, help="Precision: fp32, bf16, fp16 (GPU), int8 (CPU); default by device.")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True,
              help="Chunks embedded and written per step (the encoder packs them by token budget).")
@click.option("--chunk-overlap", type=click.IntRange(0), default=0, show_default=True,
              help="Tokens of the previous chunk repeated at the start of the next (inside a paragraph).")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files whose relative path or name matches (repeatable), e.g. '*.md'.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Leave out matching files (repeatable; wins).")
@click.option("--follow-links-outside", is_flag=True,
              help="Read file symlinks that point outside the folder they were found in (skipped by default).")
@click.option("--max-file-size", type=click.IntRange(1), default=MAX_FILE_BYTES // 2**20, show_default=True,
              metavar="MB", help="Skip files larger than this (no text file of documentation is that large).")
@click.option("--sparse", type=click.Choice(["bm25", "none"]), default=None,
              help="Also store a BM25 sparse vector per chunk ('text-sparse-new', IDF modifier) for keyword and "
                   "hybrid search. [default: bm25 for a new collection, else as the collection was made]")
@click.option("--prune", is_flag=True,
              help="Remove the stored documents under the folders given whose files are gone (never another "
                   "folder's, nor what could not be listed or read).")
@click.option("--source", default=None, metavar="NAME",
              help="First part of the document ids instead of each folder's own name (ids are NAME/<relative "
                   "path>); for files given by name, or two folders of the same name.")
@click.option("--dry-run", is_flag=True,
              help="List what would change (new, changed, unchanged, pruned); load no model, write nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary on stdout at the end (with --dry-run: every document per category).")
@click.option("--progress-interval", type=click.FloatRange(0.1), default=30.0, show_default=True, metavar="SECONDS",
              help="When stderr is not a terminal: seconds between one-line progress records.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary; errors and warnings still go to stderr.")
@click.option("--partition", metavar="K/N", default=None,
              help="Take share K of N (1-based) of the documents, by a stable hash of the document id, so N "
                   "workers fill one collection together; --prune then only touches this share.")
@click.option("--bulk-load", is_flag=True,
              help="Defer HNSW indexing while loading (indexing threshold 0) and restore it at the end; "
                   "a killed run's settings are restored by the next run. For large first loads on a server.")
@click.option("--index", "build_index", is_flag=True,
              help="Embedded store: build the HNSW index at the end (in a child process; minutes per 100k "
                   "chunks) and report its recall@10 against exact search. Search is exact until then.")
@click.option("--upsert-batch", type=click.IntRange(1), default=256, show_default=True,
              help="Points per upsert request.")
@click.option("--in-flight", type=click.IntRange(1), default=4, show_default=True,
              help="Upsert requests in flight at once (server only; the embedded store writes one at a time).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Read, chunk and embed on a Ray cluster (pip install 'sgpt-qdrant[ray]'): ADDRESS as for "
                   "ray.init ('auto', 'host:6379', 'ray://host:10001'); alone: RAY_ADDRESS, else the cluster "
                   "started on this machine, else a local one. Write --ray=ADDRESS before the paths.")
@click.option("--ray-actors", type=click.IntRange(1), default=None,
              help="With --ray: embedding actors [default: one per GPU of the cluster, else 1].")
@click.option("--ray-gpus-per-actor", type=click.FloatRange(0), default=None,
              help="With --ray: GPUs per embedding actor [default: 1 when the cluster has GPUs, else 0].")
@click.option("--shards", type=click.IntRange(1), default=None, help="New collection: number of shards.")
@click.option("--replication-factor", type=click.IntRange(1), default=None,
              help="New collection: copies of each shard.")
@click.option("--write-consistency", type=click.IntRange(1), default=None,
              help="New collection: replicas that must acknowledge a write.")
@click.option("--on-disk", is_flag=True, default=None, help="New collection: vectors on disk (memmap) instead of RAM.")
@click.option("--on-disk-payload", is_flag=True, default=None, help="New collection: payloads on disk.")
@click.option("--quantization", type=click.Choice(["none", "int8"]), default="none", show_default=True,
              help="New collection: int8 scalar quantisation of the stored vectors (kept in RAM).")
@click.option("--hnsw-m", type=click.IntRange(0), default=None, help="New collection: HNSW m (edges per node).")
@click.option("--hnsw-ef-construct", type=click.IntRange(1), default=None, help="New collection: HNSW ef_construct.")
def cli(paths, collection, qdrant_path, qdrant_url, prefer_grpc, timeout, model, device, dtype, batch_size,
        chunk_overlap, include, exclude, follow_links_outside, max_file_size, sparse, prune, source, dry_run, as_json,
        progress_interval, quiet, partition, bulk_load, build_index, upsert_batch,
        in_flight, ray_address, ray_actors, ray_gpus_per_actor, shards, replication_factor, write_consistency,
        on_disk, on_disk_payload, quantization, hnsw_m,
        hnsw_ef_construct):
    """Chunk documents (.txt, .md, .rst, .html and other text files; folders are read
    recursively) into pieces of at most the model's max_seq_length tokens, embed them with SGPT
    and store them in Qdrant, where LlamaIndex's QdrantVectorStore can query them.

    Re-running is incremental: unchanged files are not embedded again, changed files have all
    their chunks replaced. State lives in Qdrant, so a killed run is finished by running the
    same command again.

    The "New collection" options apply when this command creates the collection; an existing
    one is used as it is, with a warning for each difference (a different dimension or
    distance is refused). The embedded store ignores the server-only ones.

    Exit status: 0 all readable files ingested; 1 some file failed (each named on stderr; the
    others are done); 2 a problem found before any work; 130 interrupted (Ctrl-C).
    """
    try:
        store = store_target(qdrant_path, qdrant_url, prefer_grpc, timeout)
    except qc.StoreError as exc:  # an API key no HTTP header can carry: one line, before any work
        _err(f"error: {exc}")
        sys.exit(EXIT_SETUP)
    from .collection_config import CollectionSettings
    from .distributed import RayOptions
    from .pipeline import IngestOptions

    ray = None if ray_address is None else RayOptions(
        address=ray_address or None, actors=ray_actors, gpus_per_actor=ray_gpus_per_actor,
        show_progress=not quiet and sys.stderr.isatty(), on_cluster_lost=_cluster_lost)
    settings = CollectionSettings(shards=shards, replication_factor=replication_factor,
                                  write_consistency_factor=write_consistency, on_disk=on_disk,
                                  on_disk_payload=on_disk_payload, quantization=quantization == "int8", hnsw_m=hnsw_m,
                                  hnsw_ef_construct=hnsw_ef_construct)
    options = IngestOptions(device=device, dtype=dtype, batch_size=batch_size, chunk_overlap=chunk_overlap,
                            include=include, exclude=exclude,
                            read=ReadOptions(follow_links_outside, max_file_size * 2**20), sparse=sparse, prune=prune,
                            source=source, dry_run=dry_run, partition=partition, bulk_load=bulk_load,
                            upsert_batch=upsert_batch, in_flight=in_flight, ray=ray, settings=settings)
    sys.exit(run(paths, store=store, collection=collection, model=model, as_json=as_json, quiet=quiet,
                 progress_interval=progress_interval, build_index=build_index, options=options))


class _LogToProgress(logging.Handler):
    """Library warnings (retries, collection differences, bulk load) around the progress bar."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__(logging.WARNING)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.message(f"warning: {record.getMessage()}")


def run(paths, *, store: qc.StoreTarget | None = None, collection: str = schema.DEFAULT_COLLECTION, model=None,
        as_json: bool = False, quiet: bool = False, progress_interval: float = 30.0, options=None,
        build_index: bool = False) -> int:
    """The command without click: prints, returns the exit status. ``store``: default the embedded
    store in ./qdrant_storage, with the environment's API key; ``options``: an IngestOptions."""
    try:  # seconds of imports: a Ctrl-C here is the same one line and exit status as later
        from .pipeline import IngestError, IngestOptions, ingest_paths
        from .distributed import RayClusterError
        from .upload import UploadError
    except KeyboardInterrupt:
        _err("interrupted before any work; nothing was written")
        return EXIT_INTERRUPTED

    global _work_started
    _work_started = True
    progress = _Progress(enabled=False, tty=False, interval=progress_interval)
    handler = _LogToProgress(progress)
    logger = logging.getLogger("sgpt_qdrant")
    logger.addHandler(handler)
    logger.propagate = False
    _secrets[:] = [os.environ.get(qc.API_KEY_ENV)]
    started = _process_started or time.perf_counter()
    # An unreachable server is one error line; qdrant-client's version-check warning would add a second.
    warnings.filterwarnings("ignore", message="Failed to obtain server version")
    show_warning = warnings.showwarning  # library warnings (qdrant-client's) as one redacted line each
    warnings.showwarning = lambda message, *args, **kwargs: progress.message(f"warning: {message}")
    try:
        store = store or store_target()
        _secrets.append(store.api_key)
        opts = options or IngestOptions()
        progress = _Progress(enabled=not quiet, tty=sys.stderr.isatty(), interval=progress_interval)
        handler.progress = progress
        # with --json, stdout carries the JSON alone: whatever a library prints there during the run
        # (Ray's "(raylet) A worker died ..." lines from its log monitor) goes to stderr
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            summary = ingest_paths(
                paths, store=store, collection=collection, model=model, options=opts,
                on_progress=_raising(progress.update),
                on_message=lambda m: None if quiet and (m.startswith("skipped") or m.startswith(("loading", "model", "note")))
                else progress.message(m.replace("follow_links_outside=True", "--follow-links-outside")))
        progress.close()
        index = None
        if build_index and not summary.dry_run:
            index = _build_index(store, collection, quiet)
    except KeyboardInterrupt:
        progress.close()
        _err("interrupted; what was written is consistent: run the same command again to finish")
        return EXIT_INTERRUPTED
    except (IngestError, qc.StoreError, ValueError) as exc:
        progress.close()
        _err(f"error: {exc}")
        return EXIT_SETUP
    except RayClusterError as exc:  # a raylet, node or actor gone mid-run (ingest.distributed)
        progress.close()
        _err(f"error: {exc}; what was written is consistent: run the same command again")
        return EXIT_FAILED
    except UploadError as exc:  # the server stayed down mid-run: what was written is consistent
        progress.close()
        _err(f"error: {exc}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless asked
        progress.close()
        if os.environ.get("SGPT_INGEST_DEBUG"):
            raise
        _err(f"error: {qc.describe(exc)}")  # describe() names the exception type
        return EXIT_SETUP
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        warnings.showwarning = show_warning
    if _sigint_seen:  # the interrupt reached a library that swallowed it, and the run went on to the end
        _err("interrupted; what was written is consistent: run the same command again to finish")
        return EXIT_INTERRUPTED
    summary.seconds = time.perf_counter() - started
    if as_json:
        record = summary.to_dict()
        if index is not None:
            record["index"] = index
        _say(json.dumps(record, sort_keys=True), err=False)
    elif not quiet:
        for line in _summary_lines(summary):
            _say(line)
        if summary.dry_run:
            for line in _dry_run_lines(summary):
                _say(line)
    for failure in summary.failures:
        _err(f"failed: {failure}")
    return EXIT_FAILED if summary.failed else 0


def _cluster_lost(message: str) -> None:
    """--ray: the local raylet died (see RayOptions.on_cluster_lost). Ray's core worker would end the
    process with exit 1 and no message; this exit is the same as a kill, which the store survives."""
    _err(f"error: {message}; what was written is consistent: run the same command again")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_FAILED)


def _raising(update):
    """``update``, after raising again a Ctrl-C that some library swallowed (see _sigint_seen)."""
    def checked(summary) -> None:
        if _sigint_seen:
            raise KeyboardInterrupt
        update(summary)
    return checked


def _build_index(store: qc.StoreTarget, collection: str, quiet: bool) -> dict | None:
    """--index: the HNSW build in a child process (ingest.index), its elapsed time shown meanwhile."""
    from dataclasses import asdict

    from .index import build_index_in_child

    if not store.embedded:
        _err("warning: --index applies to the embedded store; a server builds its HNSW index itself")
        return None
    if not quiet:
        _err(f"building the HNSW index of collection {collection!r} (a child process) ...")
    report = build_index_in_child(store.folder, collection, on_wait=None if quiet else (
        lambda s: _err(f"  building the index: {s:.0f}s")), every=30.0)
    if not quiet:
        recall = "n/a" if report.recall_at_10 is None else f"{report.recall_at_10:.3f}"
        _err(f"HNSW index built in {report.seconds:.1f}s: {report.indexed_vectors} vectors indexed; recall@10 "
             f"against exact search {recall} ({report.samples} stored vectors as queries)")
    return asdict(report)


def main() -> None:
    """The console script: click's own handling of Ctrl-C ("Aborted!", exit 1) replaced by ours, then an
    exit without the interpreter's teardown (see _exit_now)."""
    global _process_started, _work_started
    _process_started, _work_started = _started(), False
    sleeping_cpu_threads()
    previous = signal.signal(signal.SIGINT, _on_sigint)  # from here a Ctrl-C raises KeyboardInterrupt, and is remembered
    try:
        if _sigint_seen:  # while this module was imported
            raise KeyboardInterrupt
        code = _run_cli()
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:  # between the command's end and here
        code = _interrupted()
    signal.signal(signal.SIGINT, previous)  # _exit_now defers a Ctrl-C during the exit itself
    if _sigint_seen and code != EXIT_INTERRUPTED:  # after the command had returned: it is complete
        code = _interrupted()
    _exit_now(code)


#: Set when run() starts working: an interrupt later is not "before any work".
_work_started = False


def _interrupted() -> int:
    _err("interrupted; what was written is consistent: run the same command again to finish" if _work_started
         else "interrupted before any work; nothing was written")
    return EXIT_INTERRUPTED


def _run_cli():
    try:
        return cli.main(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return _interrupted()
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code


def _exit_now(code) -> None:
    """Everything is written and closed when the command returns: skip the interpreter's teardown of
    torch, transformers and qdrant-client (seconds on a loaded machine, after the printed duration).
    Not with Ray imported: its exit hook stops the local cluster."""
    if "ray" in sys.modules:
        sys.exit(code)
    signal.signal(signal.SIGINT, _defer_sigint)  # the exit is not interrupted half-way
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python would print it
        print(code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if _sigint_seen and code != EXIT_INTERRUPTED:  # in the last moments: the command was complete
        code = _interrupted()
        sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else EXIT_SETUP)
