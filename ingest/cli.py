"""``sgpt-ingest``: click options → read, chunk, plan against Qdrant, embed, write; progress and summary.

Exit status: 0 when every readable file is in the store, 1 when some file failed (after all the
others are done; each failure is named on stderr), 2 for a problem found before any work (bad
argument, model, store or collection), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings

import click

from . import collection_config as cc
from . import store
from .partition import owns, parse_partition
from .read import find_files
from .sync import Summary, sync
from .upload import Uploader, UploadError, is_local

EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 1, 2, 130


def _err(message: str) -> None:
    click.echo(f"sgpt-ingest: {message}", err=True)


class _Progress:
    """tqdm bar on a terminal only; messages printed around it."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.start = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="ingest", file=sys.stderr, dynamic_ncols=True)

    def message(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def update(self, s: Summary) -> None:
        if self.bar is not None:
            self.bar.n = s.files_seen
            rate = s.chunks_written / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix(chunks=s.chunks_written, chunks_s=f"{rate:.1f}", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary_line(s: Summary) -> str:
    write, delete = ("would write", "would delete") if s.dry_run else ("wrote", "deleted")
    return (f"{s.files_seen} files: {s.ingested} ingested, {s.unchanged} unchanged, {s.skipped} skipped, "
            f"{s.failed} failed; {write} {s.chunks_written} chunks, {delete} {s.chunks_deleted} "
            f"({s.documents_deleted} documents pruned) in {s.seconds:.1f}s")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--collection", default=store.DEFAULT_COLLECTION, show_default=True, help="Qdrant collection name.")
@click.option("--qdrant-path", default=store.DEFAULT_PATH, show_default=True,
              help="Folder of the embedded Qdrant store (qdrant-client local mode); used when no URL is given.")
@click.option("--qdrant-url", envvar="QDRANT_URL", default=None,
              help="Qdrant server URL (env QDRANT_URL). The API key is read from env QDRANT_API_KEY only.")
@click.option("--prefer-grpc", is_flag=True, help="Talk to the server over gRPC.")
@click.option("--timeout", type=int, default=None, help="Server request timeout in seconds.")
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
@click.option("--prune", is_flag=True,
              help="Remove from the collection every document not found in this run's inputs.")
@click.option("--dry-run", is_flag=True, help="Show what would change (new, changed, unchanged, pruned); embed and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary; errors and warnings still go to stderr.")
@click.option("--partition", metavar="K/N", default=None,
              help="Take share K of N (1-based) of the documents, by a stable hash of the document id, so N "
                   "workers fill one collection together; --prune then only touches this share.")
@click.option("--bulk-load", is_flag=True,
              help="Defer HNSW indexing while loading (indexing threshold 0) and restore it at the end; "
                   "a killed run's settings are restored by the next run. For large first loads on a server.")
@click.option("--upsert-batch", type=click.IntRange(1), default=256, show_default=True,
              help="Points per upsert request.")
@click.option("--in-flight", type=click.IntRange(1), default=4, show_default=True,
              help="Upsert requests in flight at once (server only; the embedded store writes one at a time).")
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
        chunk_overlap, include, exclude, prune, dry_run, as_json, quiet, partition, bulk_load, upsert_batch,
        in_flight, shards, replication_factor, write_consistency, on_disk, on_disk_payload, quantization, hnsw_m,
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
    sys.exit(run(paths, collection=collection, qdrant_path=qdrant_path, qdrant_url=qdrant_url,
                 prefer_grpc=prefer_grpc, timeout=timeout, model=model, device=device, dtype=dtype,
                 batch_size=batch_size, chunk_overlap=chunk_overlap, include=include, exclude=exclude,
                 prune=prune, dry_run=dry_run, as_json=as_json, quiet=quiet, partition=partition,
                 bulk_load=bulk_load, upsert_batch=upsert_batch, in_flight=in_flight,
                 settings=dict(shards=shards, replication_factor=replication_factor,
                               write_consistency_factor=write_consistency, on_disk=on_disk,
                               on_disk_payload=on_disk_payload, quantization=quantization == "int8",
                               hnsw_m=hnsw_m, hnsw_ef_construct=hnsw_ef_construct)))


class _LogToProgress(logging.Handler):
    """Library warnings (retries, collection differences, bulk load) around the progress bar."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__(logging.WARNING)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.message(f"warning: {record.getMessage()}")


def run(paths, *, collection=store.DEFAULT_COLLECTION, qdrant_path=store.DEFAULT_PATH, qdrant_url=None,
        prefer_grpc=False, timeout=None, model=None, device=None, dtype=None, batch_size=256, chunk_overlap=0,
        include=(), exclude=(), prune=False, dry_run=False, as_json=False, quiet=False, partition=None,
        bulk_load=False, upsert_batch=256, in_flight=4, settings=None) -> int:
    """The command without click: returns the exit status. ``settings``: CollectionSettings fields."""
    from sgpt_qdrant import checkpoint as ckpt

    model = model or ckpt.DEFAULT_MODEL
    progress = _Progress(0, enabled=False)
    handler = _LogToProgress(progress)
    loggers = [logging.getLogger("sgpt_qdrant")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    bulk = False  # a bulk load of this run is on: end it when the run ends
    try:
        share = parse_partition(partition) if partition else None
        collection_settings = cc.CollectionSettings(**(settings or {}))
        files = [f for f in find_files(paths, include, exclude) if owns(share, f.doc_id)]
        checkpoint = ckpt.load(model)
        max_tokens = checkpoint.max_seq_length
        if chunk_overlap >= max_tokens:
            raise click.BadParameter(f"must be below the model's {max_tokens} tokens", param_hint="--chunk-overlap")
        api_key = os.environ.get("QDRANT_API_KEY") or None
        with store.open_client(qdrant_path, qdrant_url, api_key, prefer_grpc, timeout, create=not dry_run) as client:
            cc.check_collection(client, collection, checkpoint.dimension, vector_name=store.VECTOR_NAME)  # before any work
            encode = None
            if not dry_run:
                from sgpt_qdrant import Encoder

                with warnings.catch_warnings():  # a fallback is also logged: printed once, as a warning line
                    warnings.filterwarnings("ignore", message="sgpt_qdrant: ", category=RuntimeWarning)
                    encoder = Encoder(checkpoint, device=device, dtype=dtype)
                encode = encoder.encode
                created = cc.ensure_collection(client, collection, checkpoint.dimension, collection_settings,
                                               vector_name=store.VECTOR_NAME, bulk_load=bulk_load)
                bulk = created.bulk_load
                if is_local(client):
                    store.tune_local(client, collection)
            state = {doc_id: s for doc_id, s in store.read_state(client, collection).items() if owns(share, doc_id)}
            progress = _Progress(len(files), enabled=not quiet and sys.stderr.isatty())
            handler.progress = progress
            writer = contextlib.nullcontext() if dry_run else Uploader(
                client, collection, batch_size=upsert_batch, max_in_flight=in_flight, barrier_deletes=False)
            try:
                with writer:
                    summary = sync(files, state, tokenizer=checkpoint.tokenizer, max_tokens=max_tokens, model=model,
                                   overlap=chunk_overlap, encode=encode, writer=None if dry_run else writer,
                                   batch_size=batch_size, prune=prune, dry_run=dry_run, on_progress=progress.update,
                                   on_message=lambda m: None if quiet and m.startswith("skipped") else progress.message(m))
            except KeyboardInterrupt:
                progress.close()
                if bulk:
                    _restore_after_interrupt(client, collection)
                raise
            progress.close()
            if bulk:
                cc.end_bulk_load(client, collection)
            if not dry_run:
                cc.warn_if_large_local(client, collection)
    except KeyboardInterrupt:
        progress.close()
        _err("interrupted; what was written is consistent: run the same command again to finish")
        return EXIT_INTERRUPTED
    except click.BadParameter as exc:
        _err(f"error: {exc.format_message()}")
        return EXIT_SETUP
    except (store.StoreError, ckpt.CheckpointError, cc.BulkLoadError, FileNotFoundError, ValueError) as exc:
        _err(f"error: {exc}")
        return EXIT_SETUP
    except UploadError as exc:  # the server stayed down mid-run: what was written is consistent
        progress.close()
        _err(f"error: {exc}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless asked
        if os.environ.get("SGPT_INGEST_DEBUG"):
            raise
        _err(f"error: {type(exc).__name__}: {exc}")
        return EXIT_SETUP
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.propagate = True
    if as_json:
        click.echo(json.dumps(summary.to_dict(), sort_keys=True))
    elif not quiet:
        _err(("dry run: " if dry_run else "") + _summary_line(summary))
    for failure in summary.failures:
        _err(f"failed: {failure}")
    return EXIT_FAILED if summary.failed else 0


def _restore_after_interrupt(client, collection: str) -> None:
    """Ctrl-C during a bulk load: put the index settings back now (best effort; the marker in
    the collection lets the next run do it otherwise)."""
    try:
        cc.end_bulk_load(client, collection, interrupted=True)
    except Exception as exc:  # noqa: BLE001 - the next run restores from the marker
        _err(f"warning: index settings not restored now ({type(exc).__name__}); the next run restores them")


def main() -> None:
    cli()
