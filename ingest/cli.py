"""``sgpt-ingest``: click options → read, chunk, plan against Qdrant, embed, write; progress and summary.

Exit status: 0 when every readable file is in the store, 1 when some file failed (after all the
others are done; each failure is named on stderr), 2 for a problem found before any work (bad
argument, model, store or collection), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from . import store
from .read import find_files
from .sync import Summary, sync

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
    verb = "would write" if s.dry_run else "wrote"
    return (f"{s.files_seen} files: {s.ingested} ingested, {s.unchanged} unchanged, {s.skipped} skipped, "
            f"{s.failed} failed; {verb} {s.chunks_written} chunks, deleted {s.chunks_deleted} "
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
                   "Muennighoff/SGPT-125M-weightedmean-nli-bitfit]")
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
def cli(paths, collection, qdrant_path, qdrant_url, prefer_grpc, timeout, model, device, dtype, batch_size,
        chunk_overlap, include, exclude, prune, dry_run, as_json, quiet):
    """Chunk documents (.txt, .md, .rst, .html and other text files; folders are read
    recursively) into pieces of at most the model's max_seq_length tokens, embed them with SGPT
    and store them in Qdrant, where LlamaIndex's QdrantVectorStore can query them.

    Re-running is incremental: unchanged files are not embedded again, changed files have all
    their chunks replaced. State lives in Qdrant, so a killed run is finished by running the
    same command again.

    Exit status: 0 all readable files ingested; 1 some file failed (each named on stderr; the
    others are done); 2 a problem found before any work; 130 interrupted (Ctrl-C).
    """
    sys.exit(run(paths, collection=collection, qdrant_path=qdrant_path, qdrant_url=qdrant_url,
                 prefer_grpc=prefer_grpc, timeout=timeout, model=model, device=device, dtype=dtype,
                 batch_size=batch_size, chunk_overlap=chunk_overlap, include=include, exclude=exclude,
                 prune=prune, dry_run=dry_run, as_json=as_json, quiet=quiet))


def run(paths, *, collection=store.DEFAULT_COLLECTION, qdrant_path=store.DEFAULT_PATH, qdrant_url=None,
        prefer_grpc=False, timeout=None, model=None, device=None, dtype=None, batch_size=256, chunk_overlap=0,
        include=(), exclude=(), prune=False, dry_run=False, as_json=False, quiet=False) -> int:
    """The command without click: returns the exit status."""
    from sgpt_qdrant import checkpoint as ckpt

    model = model or ckpt.DEFAULT_MODEL
    progress = None
    try:
        files = list(find_files(paths, include, exclude))
        checkpoint = ckpt.load(model)
        max_tokens = checkpoint.max_seq_length
        if chunk_overlap >= max_tokens:
            raise click.BadParameter(f"must be below the model's {max_tokens} tokens", param_hint="--chunk-overlap")
        api_key = os.environ.get("QDRANT_API_KEY") or None
        with store.open_client(qdrant_path, qdrant_url, api_key, prefer_grpc, timeout, create=not dry_run) as client:
            store.check_collection(client, collection, checkpoint.dimension)  # before any work
            state = store.read_state(client, collection)
            encode = writer = None
            if not dry_run:
                from sgpt_qdrant import Encoder

                encoder = Encoder(checkpoint, device=device, dtype=dtype)
                encode = encoder.encode
                store.ensure_collection(client, collection, checkpoint.dimension)
                if store.is_local(client):
                    store.tune_local(client, collection)
                writer = store.Writer(client, collection)
            progress = _Progress(len(files), enabled=not quiet and sys.stderr.isatty())
            summary = sync(files, state, tokenizer=checkpoint.tokenizer, max_tokens=max_tokens, model=model,
                           overlap=chunk_overlap, encode=encode, writer=writer, batch_size=batch_size,
                           prune=prune, dry_run=dry_run, on_progress=progress.update,
                           on_message=lambda m: None if quiet and m.startswith("skipped") else progress.message(m))
            progress.close()
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        _err("interrupted; what was written is consistent: run the same command again to finish")
        return EXIT_INTERRUPTED
    except click.BadParameter as exc:
        _err(f"error: {exc.format_message()}")
        return EXIT_SETUP
    except (store.StoreError, ckpt.CheckpointError, FileNotFoundError, ValueError) as exc:
        _err(f"error: {exc}")
        return EXIT_SETUP
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless asked
        if os.environ.get("SGPT_INGEST_DEBUG"):
            raise
        _err(f"error: {type(exc).__name__}: {exc}")
        return EXIT_SETUP
    if as_json:
        click.echo(json.dumps(summary.to_dict(), sort_keys=True))
    elif not quiet:
        _err(("dry run: " if dry_run else "") + _summary_line(summary))
    for failure in summary.failures:
        _err(f"failed: {failure}")
    return EXIT_FAILED if summary.failed else 0


def main() -> None:
    cli()
