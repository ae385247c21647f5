"""``sgpt-train`` and ``sgpt-eval``. Multi-GPU: ``torchrun --nproc_per_node N -m sgpt_qdrant.train.cli ...``.

Only click and the config are imported up front, so ``--help`` and a refused option answer
without loading torch; the trainer is imported when it runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys

import click

from ..cli_util import refuse as _refuse
from ..cli_util import sleeping_cpu_threads
from .config import DEFAULT_BASE


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..checkpoint import CheckpointError
    from .data import DataError

    return (DataError, CheckpointError, ValueError, FileNotFoundError, FileExistsError)


def _setup_logging(main_rank: bool = True) -> None:
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "huggingface_hub", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--data", "data", multiple=True, required=True,
              help="Training data, repeatable: AllNLI .tsv/.tsv.gz, SNLI/MultiNLI .jsonl, triplet .tsv/.jsonl, "
                   "or hf:NAME[:CONFIG] (needs `datasets`, online; hf:sentence-transformers/all-nli is AllNLI).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Output directory (Hub layout, README.md, eval/ CSVs).")
@click.option("--base-model", default=DEFAULT_BASE, help="GPT-Neo Hub id or local Hugging Face directory.")
@click.option("--dense", "n_dense", default=5, type=int, help="Dense layers added before pooling.")
@click.option("--pooling", default="mean", type=click.Choice(["mean", "weightedmean", "lasttoken"]))
@click.option("--max-seq-length", default=75, type=int)
@click.option("--freeze-transformer/--no-freeze-transformer", default=True,
              help="Train only the Dense layers (the recipe) or everything.")
@click.option("--batch-size", default=64, type=int, help="Triplets per step and process.")
@click.option("--epochs", default=1, type=int)
@click.option("--max-steps", default=None, type=int,
              help="Train exactly this many steps, over as many epochs as needed (replaces --epochs, as in "
                   "Hugging Face's Trainer); the schedule spans them; 0 writes the untrained model.")
@click.option("--lr", default=2e-5, type=float)
@click.option("--adam-eps", default=1e-6, type=float)
@click.option("--weight-decay", default=0.01, type=float)
@click.option("--warmup-ratio", default=0.1, type=float)
@click.option("--max-grad-norm", default=1.0, type=float)
@click.option("--scale", default=20.0, type=float, help="MNRL similarity scale (1 / temperature).")
@click.option("--seed", default=42, type=int)
@click.option("--split", default="train", help="Rows of this split, for files with a split column (AllNLI).")
@click.option("--sts-dev", type=click.Path(dir_okay=False), help="STS-B dev: sts-dev.csv or stsbenchmark.tsv.gz.")
@click.option("--sts-test", type=click.Path(dir_okay=False), help="STS-B test: sts-test.csv or stsbenchmark.tsv.gz.")
@click.option("--eval-steps", default=None, type=int,
              help="STS dev every N steps of an epoch, and at each epoch's end [default: 10% of an epoch, or "
                   "of the run when --max-steps is shorter]; 0: only at epoch ends.")
@click.option("--save-steps", default=None, type=int, help="Resume checkpoints [default: as --eval-steps]; 0: none.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep OUTPUT/checkpoints/ after the run finishes.")
@click.option("--resume", is_flag=False, flag_value="auto", default=None,
              help="Continue from a resume checkpoint folder; alone: the latest in OUTPUT/checkpoints.")
@click.option("--overwrite", is_flag=True, help="Replace the model in an existing output directory.")
@click.option("--device", default=None, help="cuda, cuda:1, mps, cpu [default: best available].")
@click.option("--precision", default="auto", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="auto: bf16 (fp16 without bf16) on CUDA, fp32 elsewhere.")
@click.option("--eval-batch-size", default=64, type=int)
@click.option("--progress/--no-progress", default=True)
def main(**options) -> None:
    """Train an SGPT bi-encoder by the SGPT-125M-mean-nli-linearthenpool5 recipe (defaults = recipe)."""
    sleeping_cpu_threads()
    from .config import TrainConfig

    _setup_logging(int(os.environ.get("RANK", "0")) == 0)
    options["data"] = list(options["data"])
    try:
        config = TrainConfig(**options)
        config.refuse_at_once()  # before torch is imported: a refusal answers at once
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise _refuse(exc) from None
    from . import distributed
    from .loop import train

    try:
        result = train(config)
        main_rank = distributed.is_main()
    except _user_errors() as exc:
        raise _refuse(exc) from None
    finally:
        distributed.shutdown()
    if not main_rank:
        return
    if result.interrupted:
        click.echo(f"stopped at step {result.steps} of {result.total_steps}; continue with: "
                   f"sgpt-train ... --output {config.output} --resume", err=True)
        sys.exit(130)
    summary = {"output": str(result.output), "steps": result.steps, "best_score": result.best_score,
               "best_step": result.best_step, "dev": result.dev, "test": result.test}
    click.echo(json.dumps(_json_safe(summary), indent=2, allow_nan=False))


def _json_safe(value):
    """NaN and infinities as null: a correlation over constant scores is NaN, and a bare ``NaN``
    is not JSON (``jq`` and most parsers refuse the whole output)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("model")
@click.option("--sts", "sts_files", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="sts-dev.csv / sts-test.csv or stsbenchmark.tsv.gz (with --split); repeatable.")
@click.option("--split", default="test", help="Split to read from a stsbenchmark.tsv.gz file.")
@click.option("--device", default=None)
@click.option("--dtype", default=None, help="fp32, bf16, fp16 [default: bf16 on CUDA, fp32 elsewhere].")
@click.option("--csv-dir", type=click.Path(file_okay=False), help="Append the results to a CSV here.")
def eval_main(model: str, sts_files: tuple[str, ...], split: str, device: str | None, dtype: str | None,
              csv_dir: str | None) -> None:
    """Score any model SGPTEmbedding can load (Hub id or directory) on STS Benchmark."""
    sleeping_cpu_threads()
    from ..engine import Encoder
    from .evaluate import append_csv, evaluate, read_sts

    _setup_logging()
    try:
        sets = [read_sts(path, split) for path in sts_files]
        encoder = Encoder(model, device=device, dtype=dtype)
        results = {}
        for path, sts in zip(sts_files, sets):
            metrics = evaluate(encoder.encode, sts)
            results[f"{path}:{sts.name}"] = metrics
            if csv_dir:
                append_csv(csv_dir, sts, -1, -1, metrics)
    except _user_errors() as exc:
        raise _refuse(exc) from None
    click.echo(json.dumps(_json_safe(results), indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
