"""README.md model card of a trained model: how it was trained and how it scores.

It is given plain facts (:class:`RunFacts`), so it knows nothing of the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig

_METRIC_NAMES = ("cosine", "euclidean", "manhattan", "dot")


@dataclass
class RunFacts:
    """What the card reports beyond the config; the trainer fills it in."""

    sources: list[str]  # as given: files (shown by name only) or hf: specs
    split_sources: list[str]  # those of ``sources`` whose rows were chosen by ``split``
    pairs: int
    ready_triplets: int
    triplets: int
    trainable: int
    n_dense: int
    hidden: int
    dimension: int
    pooling: str
    max_length: int
    world: int
    steps: int
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int
    eval_steps: int
    precision: str  # fp32 / bf16 / fp16
    has_dev: bool
    kept: str | None = None  # where the kept model was evaluated, e.g. "step 300 of 300"
    dev: dict[str, float] | None = None
    test: dict[str, float] | None = None


def _row(label: str, metrics: dict[str, float]) -> str:
    cells = [f"{metrics[f'{m}_spearman']:.4f} / {metrics[f'{m}_pearson']:.4f}" for m in _METRIC_NAMES]
    return f"| {label} | " + " | ".join(cells) + " |"


def _shown(source: str) -> str:
    """A local path by its file name only (no user's directories in a published card)."""
    return source if source.startswith("hf:") else Path(source).name


def _base_shown(base_model: str) -> str:
    return f"`{Path(base_model).name}` (a local directory)" if Path(base_model).exists() else f"`{base_model}`"


def render(config: TrainConfig, facts: RunFacts) -> str:
    name = Path(config.output).resolve().name
    base = _base_shown(config.base_model)
    frozen = "frozen (only the Dense layers train)" if config.freeze_transformer else "fine-tuned"
    per_step = config.batch_size * facts.world
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags:",
        "- sentence-transformers",
        "- feature-extraction",
        "- sentence-similarity",
        "- sgpt",
        *([f"base_model: {config.base_model}"] if not Path(config.base_model).exists() else []),
        "---",
        "",
        f"# {name}",
        "",
        f"SGPT bi-encoder trained with `sgpt-train` (sgpt-qdrant) from {base} by the NLI recipe of "
        f"SGPT-125M-mean-nli-linearthenpool5: GPT-Neo, {facts.n_dense} Dense layers (GELU) applied per token, "
        f"then {facts.pooling} pooling. The Dense layers carry `key_name: token_embeddings`, as in the published "
        "SGPT models.",
        "",
        "## Usage",
        "",
        "Load the model by the path of this folder; from the folder that holds it:",
        "",
        "```python",
        "from sgpt_qdrant import Encoder, SGPTEmbedding",
        f'vectors = Encoder("./{name}").encode(["A man is playing a guitar."])',
        f'embed_model = SGPTEmbedding(model_name="./{name}")  # LlamaIndex',
        "```",
        "",
        "In sentence-transformers 6.x set `module_input_name` and `module_output_name` to "
        '`"token_embeddings"` on the Dense modules before the Pooling module, and pass stripped texts.',
        "",
    ]
    if facts.dev is not None or facts.test is not None:
        lines += [
            "## Evaluation (STS Benchmark, Spearman / Pearson)",
            "",
            "| split | cosine | euclidean | manhattan | dot |",
            "|---|---|---|---|---|",
        ]
        if facts.dev is not None:
            lines.append(_row(f"dev (kept model: {facts.kept})", facts.dev))
        if facts.test is not None:
            lines.append(_row("test (kept model)", facts.test))
        lines += ["", "Every evaluation is in `eval/similarity_evaluation_*_results.csv`.", ""]
    sources = ", ".join(f"`{_shown(s)}`" + (f" (split `{config.split}`)" if s in facts.split_sources else "")
                        for s in facts.sources)
    built = facts.triplets - facts.ready_triplets
    epochs = facts.total_steps / facts.steps_per_epoch if facts.steps_per_epoch else 0
    if not facts.has_dev:
        evaluation = "none (the final model is kept)"
    else:
        every = f"every {facts.eval_steps} steps, " if facts.eval_steps else ""
        evaluation = (f"STS-B dev {every}at the end of each epoch and of training; kept: the best of the four "
                      "Spearman correlations")
    params = [
        ("Base model", f"{base}, {frozen}"),
        ("Trainable parameters", f"{facts.trainable:,}"),
        ("Head", f"{facts.n_dense} × Dense {facts.hidden}→{facts.dimension} + GELU per token, "
                 f"{facts.pooling} pooling"),
        ("Max sequence length", f"{facts.max_length} tokens (pad = eos, right padding)"),
        ("Data", f"{sources}: {facts.pairs:,} pairs → {built:,} triplets by the recipe, plus "
                 f"{facts.ready_triplets:,} ready-made; {facts.triplets:,} in all"),
        ("Batching", f"no duplicate texts per batch; {config.batch_size} per process × {facts.world} process(es) "
                     f"= {per_step} anchors per step, each scored against {2 * per_step} candidates"),
        ("Loss", f"MultipleNegativesRankingLoss, cosine, scale {config.scale:g}, in-batch + hard negatives"),
        ("Steps", f"{facts.steps:,} of {facts.total_steps:,} planned ({facts.steps_per_epoch:,} per epoch, "
                  f"{epochs:.3g} epoch(s))"),
        ("Optimizer", f"AdamW lr {config.lr:g}, eps {config.adam_eps:g}, weight decay {config.weight_decay:g} "
                      f"(not on biases and LayerNorm), gradient clipping at norm {config.max_grad_norm:g}"),
        ("Schedule", f"linear warmup over {facts.warmup_steps:,} steps, then linear decay to 0"),
        ("Evaluation", evaluation),
        ("Precision", facts.precision + ("" if facts.precision == "fp32" else " (autocast)")),
        ("Seed", str(config.seed)),
    ]
    lines += ["## Training", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in params), ""]
    return "\n".join(lines)


def write_model_card(path: Path, config: TrainConfig, facts: RunFacts) -> None:
    path.write_text(render(config, facts), encoding="utf-8")
