"""``sgpt-eval-retrieval``: click options → :func:`ingest.retrieval_eval.evaluate_beir` → table or JSON.

A sibling of ``sgpt-eval`` (the trainer's STS evaluation) rather than a subcommand of it, so
the trainer never imports the ingest. Exit status: 0 done, 2 bad data / model / store, 130
interrupted (the store is consistent: run again to go on).
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from .cli_options import url_option

EXIT_SETUP, EXIT_INTERRUPTED = 2, 130


def _table(report) -> str:
    from .retrieval_metrics import NAMES

    head = f"{'mode':<8}" + "".join(f"{n:>12}" for n in NAMES) + f"{'queries/s':>12}"
    lines = [head, "-" * len(head)]
    for mode, result in report.modes.items():
        lines.append(f"{mode:<8}" + "".join(f"{result.metrics[n]:>12.4f}" for n in NAMES)
                     + f"{result.queries_per_second:>12.1f}")
    return "\n".join(lines)


class _Progress:
    """One tqdm bar per phase on a terminal; off a terminal a line every ``interval`` seconds."""

    def __init__(self, enabled: bool, interval: float = 30.0) -> None:
        self.enabled, self.tty, self.interval = enabled, sys.stderr.isatty(), interval
        self.bar, self.phase, self.last, self.shown = None, None, 0.0, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.tty:
            if phase != self.phase:
                self.close()
                from tqdm import tqdm

                unit = "doc" if phase == "ingest" else "query"
                self.bar = tqdm(total=total, desc=phase, unit=unit, file=sys.stderr, dynamic_ncols=True)
            self.bar.total = max(total, done)
            self.bar.n = done
            self.bar.refresh()
        else:
            now = time.perf_counter()
            if (phase, done) != self.shown and (phase != self.phase or now - self.last >= self.interval
                                                 or done == total):
                unit = "documents" if phase == "ingest" else "queries"
                click.echo(f"sgpt-eval-retrieval: {phase}: {done}/{total} {unit}", err=True)
                self.last, self.shown = now, (phase, done)
        self.phase = phase

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--model", envvar="SGPT_MODEL", default=None,
              help="SGPT model: Hub id or local folder (env SGPT_MODEL). [default: "
                   "Muennighoff/SGPT-125M-mean-nli-linearthenpool5]")
@click.option("--store", default=None, metavar="DIR",
              help="Where the corpus files and the embedded store live (re-used by the next run). "
                   "[default: DATA/sgpt-eval]")
@url_option(help="Use this Qdrant server for the vectors instead of an embedded store (API key: QDRANT_API_KEY).")
@click.option("--collection", default="corpus", show_default=True)
@click.option("--split", default="test", show_default=True, help="The qrels file: DATA/qrels/SPLIT.tsv.")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["dense", "sparse", "hybrid"]),
              help="Repeatable. [default: all three]")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Queries per request.")
@click.option("--max-queries", type=click.IntRange(1), default=None, help="Only the first N judged queries.")
@click.option("--first-chunk", is_flag=True,
              help="Rank documents by their first chunk (the first max_seq_length tokens, as the paper's BEIR runs "
                   "truncated them) instead of their best chunk.")
@click.option("--device", default=None, help="torch device; default: the best available.")
@click.option("--dtype", default=None, help="Precision: fp32, bf16, fp16 (GPU), int8 (CPU); default by device.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress.")
def cli(data, model, store, qdrant_url, collection, split, modes, batch_size, max_queries, first_chunk, device, dtype,
        as_json, quiet):
    """Retrieval quality on a BEIR-layout folder DATA (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv),
    through sgpt-ingest's pipeline and query path: nDCG@10, MAP@100, recall@100 and MRR@10 for
    dense (SGPT), sparse (BM25) and hybrid (RRF in Qdrant) retrieval.

    The corpus is ingested once into --store; a second run re-embeds nothing, and a killed run
    is finished by the next.
    """
    sys.exit(run(data, model=model, store=store, qdrant_url=qdrant_url, collection=collection, split=split,
                 modes=modes, batch_size=batch_size, max_queries=max_queries, first_chunk=first_chunk, device=device,
                 dtype=dtype,
                 as_json=as_json, quiet=quiet))


def run(data, *, model=None, store=None, qdrant_url=None, collection="corpus", split="test", modes=(),
        batch_size=64, max_queries=None, first_chunk=False, device=None, dtype=None, as_json=False, quiet=False) -> int:
    """The command without click: prints, returns the exit status."""
    from sgpt_qdrant import checkpoint as ckpt

    from .cli_options import store_target
    from .client import StoreError, redact
    from .pipeline import IngestError
    from .retrieval_eval import EvalDataError, evaluate_beir
    from .search import MODES

    progress = _Progress(enabled=not quiet)
    api_key = None
    try:
        target = store_target(qdrant_url=qdrant_url)  # the key of the environment checked, whatever the store
        api_key = target.api_key
        server = target if qdrant_url else None
        from sgpt_qdrant.engine import Encoder

        name = model or ckpt.DEFAULT_MODEL
        encoder = Encoder(name, device=device, dtype=dtype)
        report = evaluate_beir(data, store=store or os.path.join(data, "sgpt-eval"), encoder=encoder, model=name,
                               server=server, collection=collection, split=split,
                               modes=modes or MODES, batch_size=batch_size, max_queries=max_queries,
                               first_chunk=first_chunk,
                               on_progress=progress,
                               on_message=None if quiet else lambda m: click.echo(m, err=True))
    except KeyboardInterrupt:
        progress.close()
        click.echo("sgpt-eval-retrieval: interrupted; the store is consistent: run again to go on", err=True)
        return EXIT_INTERRUPTED
    except (EvalDataError, IngestError, StoreError, ckpt.CheckpointError, ValueError, OSError) as exc:
        progress.close()
        click.echo(f"sgpt-eval-retrieval: error: {redact(str(exc), [api_key])}", err=True)
        return EXIT_SETUP
    progress.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), sort_keys=True))
    else:
        how = "first chunk" if report.first_chunk else "best chunk"
        click.echo(f"{report.data} ({report.split}, documents by their {how}): {report.documents} documents, {report.queries} queries; "
                   f"ingest wrote {report.chunks_written} chunks in {report.ingest_seconds:.1f}s")
        click.echo(_table(report))
    return 0


def main() -> None:
    from sgpt_qdrant.cli_util import sleeping_cpu_threads

    sleeping_cpu_threads()
    cli()
