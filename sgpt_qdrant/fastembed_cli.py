"""``sgpt-export-fastembed [OUT] [--model ID_OR_PATH]``: build the folder FastEmbed / Qdrant inference loads.

Prints the folder and the two lines a query process needs. Exit status 0, or 2 with one line
(``Error: ...``) for a model that cannot be loaded or exported.
"""

from __future__ import annotations

import logging

import click

from .cli_util import refusing


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", required=False, type=click.Path(file_okay=False))
@click.option("--model", envvar="SGPT_MODEL", default=None,
              help="SGPT checkpoint: Hub id, local folder or sgpt-train output (also SGPT_MODEL; default "
                   "Muennighoff/SGPT-125M-mean-nli-linearthenpool5).")
def main(out: str | None, model: str | None) -> None:
    """Export the model for FastEmbed into the cache and, if given, the folder OUT.

    The whole model (GPT-Neo + the per-token Dense layers, fp32) goes to ONNX with a tokenizer
    set up as the reference tokenises; FastEmbed mean-pools. Built once per weights and library
    versions (cache: $SGPT_CACHE_DIR, else $XDG_CACHE_HOME/sgpt_qdrant or ~/.cache/sgpt_qdrant).
    """
    from .checkpoint import DEFAULT_MODEL, CheckpointError  # torch: imported after --help
    from .fastembed_export import export_fastembed
    from .fastembed_register import FastEmbedError, read_meta

    model = model or DEFAULT_MODEL
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    click.echo(f"exporting {model} for FastEmbed (a first export takes a while: ONNX export of the whole model)",
               err=True)
    with refusing(CheckpointError, FastEmbedError):
        folder = export_fastembed(model, out)
    meta = read_meta(folder)
    click.echo(str(folder))
    click.echo(f"use it (no torch needed): sgpt = register_fastembed({str(folder)!r})  "
               f"# from sgpt_qdrant.fastembed_register; FastEmbed name {meta['name']!r}, dim {meta['dim']}; then "
               "models.Document(text=..., model=sgpt.name, options=sgpt.options)", err=True)


if __name__ == "__main__":
    main()
