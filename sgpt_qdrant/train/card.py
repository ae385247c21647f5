"""README.md model card of a trained model: how it was trained and how it scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Trainer

_METRIC_NAMES = ("cosine", "euclidean", "manhattan", "dot")


def _row(label: str, metrics: dict[str, float]) -> str:
    cells = [f"{metrics[f'{m}_spearman']:.4f} / {metrics[f'{m}_pearson']:.4f}" for m in _METRIC_NAMES]
    return f"| {label} | " + " | ".join(cells) + " |"


def write_model_card(path: Path, trainer: Trainer, test: dict[str, float] | None) -> None:
    cfg = trainer.config
    name = Path(cfg.output).resolve().name
    trainable = sum(p.numel() for p in trainer.params)
    frozen = "frozen (only the Dense layers train)" if trainer.frozen else "fine-tuned"
    per_step = cfg.batch_size * trainer.world
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags:",
        "- sentence-transformers",
        "- feature-extraction",
        "- sentence-similarity",
        "- sgpt",
        f"base_model: {cfg.base_model}",
        "---",
        "",
        f"# {name}",
        "",
        f"SGPT bi-encoder trained with `sgpt-train` (sgpt-qdrant) from `{cfg.base_model}` by the NLI recipe of "
        "SGPT-125M-mean-nli-linearthenpool5: GPT-Neo, "
        f"{len(trainer.model.dense)} Dense layers (GELU) applied per token, then {trainer.base.pooling} pooling. "
        "The Dense layers carry `key_name: token_embeddings`, as in the published SGPT models.",
        "",
        "## Usage",
        "",
        "```python",
        "from sgpt_qdrant import Encoder, SGPTEmbedding",
        f'vectors = Encoder("{name}").encode(["A man is playing a guitar."])',
        f'embed_model = SGPTEmbedding(model_name="{name}")  # LlamaIndex',
        "```",
        "",
        "In sentence-transformers 6.x set `module_input_name` and `module_output_name` to "
        '`"token_embeddings"` on the Dense modules before the Pooling module, and pass stripped texts.',
        "",
    ]
    if trainer.best_metrics is not None or test is not None:
        lines += [
            "## Evaluation (STS Benchmark, Spearman / Pearson)",
            "",
            "| split | cosine | euclidean | manhattan | dot |",
            "|---|---|---|---|---|",
        ]
        if trainer.best_metrics is not None:
            epoch, steps = trainer.best_step or (0, -1)
            where = "end of epoch" if steps == -1 else f"step {steps}"
            lines.append(_row(f"dev (kept model: epoch {epoch}, {where})", trainer.best_metrics))
        if test is not None:
            lines.append(_row("test", test))
        lines += ["", "Every evaluation is in `eval/similarity_evaluation_*_results.csv`.", ""]
    sources = ", ".join(f"`{s}`" for s in trainer.data.sources)
    params = [
        ("Base model", f"`{cfg.base_model}`, {frozen}"),
        ("Trainable parameters", f"{trainable:,}"),
        ("Head", f"{len(trainer.model.dense)} × Dense {trainer.base.config.hidden_size}→"
                 f"{trainer.base.dimension} + GELU per token, {trainer.base.pooling} pooling"),
        ("Max sequence length", f"{trainer.max_length} tokens (pad = eos, right padding)"),
        ("Data", f"{sources} (split `{cfg.split}`): {len(trainer.data.pairs):,} pairs → "
                 f"{len(trainer.triplets) - len(trainer.data.triplets):,} triplets by the recipe, plus "
                 f"{len(trainer.data.triplets):,} ready-made; {len(trainer.triplets):,} in all"),
        ("Batching", f"no duplicate texts per batch; {cfg.batch_size} per process × {trainer.world} process(es) "
                     f"= {per_step} anchors per step, each scored against {2 * per_step} candidates"),
        ("Loss", f"MultipleNegativesRankingLoss, cosine, scale {cfg.scale:g}, in-batch + hard negatives"),
        ("Steps", f"{trainer.step:,} of {trainer.total_steps:,} planned ({trainer.steps_per_epoch:,} per epoch, "
                  f"{cfg.epochs} epoch(s))"),
        ("Optimizer", f"AdamW lr {cfg.lr:g}, eps {cfg.adam_eps:g}, weight decay {cfg.weight_decay:g} "
                      "(not on biases and LayerNorm), gradient clipping at norm "
                      f"{cfg.max_grad_norm:g}"),
        ("Schedule", f"linear warmup over {trainer.warmup_steps:,} steps, then linear decay to 0"),
        ("Evaluation", f"STS-B dev every {trainer.eval_steps or 'epoch'} steps and at the end; kept: best of the "
                       "four Spearman correlations" if trainer.sts_dev is not None else "none (final model kept)"),
        ("Precision", {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(trainer.dtype)]
         + ("" if not trainer.amp else " (frozen forward and mixed-precision head)")),
        ("Seed", str(cfg.seed)),
    ]
    lines += ["## Training", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in params), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
