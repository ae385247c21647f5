"""Reproduce the SGPT NLI fine-tune on a tiny GPT-Neo, with sgpt-train and with sentence-transformers.

A random tiny GPT-Neo (+ 5 Dense layers) is trained on NLI pairs turned into the recipe's
triplets, and STS-B dev cosine Spearman is reported before, at every evaluation, for the model
sgpt-train keeps (the best evaluation) and for the final model, for:

1. ``sgpt-train`` (this project: plain torch + transformers);
2. sentence-transformers 6.x (``SentenceTransformerTrainer``, ``MultipleNegativesRankingLoss``,
   the Dense ``module_input_name``/``module_output_name`` = ``"token_embeddings"`` fix), started
   from the SAME initial weights and fed the SAME batches sgpt-train drew, with the same
   optimizer, schedule, clipping and (un)freezing. Per-step losses, the evaluation curve and the
   final vectors are compared: they agree to float noise.

Needs the ``repro`` extra (``pip install -e ".[repro]"``). CPU; a few minutes per configuration on
a 2-core machine. The issue 11 configurations (MultiNLI dev matched in the AllNLI layout)::

    python benchmarks/reproduce_nli.py --data ../shared/data/nli/multinli_1.0_dev_matched_gold.jsonl \\
        --as-allnli --seed 0 --batch-size 64 --lr 1e-2 --max-steps 300
    python benchmarks/reproduce_nli.py --data ../shared/data/nli/multinli_1.0_dev_matched_gold.jsonl \\
        --as-allnli --seed 0 --no-freeze-transformer --batch-size 32 --lr 5e-4 --max-steps 400
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_NLI = [DATA / "nli" / "snli_1.0_dev_gold.jsonl", DATA / "nli" / "multinli_1.0_dev_matched_gold.jsonl"]
DEFAULT_STS = DATA / "stsbenchmark" / "sts-dev.csv"


def make_plain_gpt_neo(path: Path, hidden: int, layers: int, seed: int) -> Path:
    """A random GPT-Neo in the plain Hugging Face layout (what EleutherAI/gpt-neo-125M looks like)."""
    from transformers import GPTNeoConfig, GPTNeoModel

    from sgpt_qdrant.testing import gpt2_tokenizer

    torch.manual_seed(seed)
    config = GPTNeoConfig(vocab_size=50257, hidden_size=hidden, num_layers=layers, num_heads=4,
                          max_position_embeddings=128, attention_types=[[["global", "local"], layers // 2]],
                          embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0,
                          bos_token_id=50256, eos_token_id=50256)
    GPTNeoModel(config).save_pretrained(path)
    tokenizer = gpt2_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(path)
    return path


def write_allnli(jsonl_files: list[Path], out: Path) -> Path:
    """NLI .jsonl rows rewritten in AllNLI's .tsv.gz layout (``split dataset sentence1 sentence2 label``)."""
    with gzip.open(out, "wt", encoding="utf-8", newline="") as f:
        f.write("split\tdataset\tsentence1\tsentence2\tlabel\n")
        for path in jsonl_files:
            with open(path, encoding="utf-8") as rows:
                for line in rows:
                    row = json.loads(line)
                    s1, s2 = row.get("sentence1", row.get("premise")), row.get("sentence2", row.get("hypothesis"))
                    label = row.get("gold_label", row.get("label"))
                    clean = [str(x).replace("\t", " ").replace("\n", " ") for x in (s1, s2)]
                    f.write(f"train\t{path.stem}\t{clean[0]}\t{clean[1]}\t{label}\n")
    return out


def sentence_transformers_model(base: Path, start, freeze: bool):
    """sentence-transformers 6.x model with our starting Dense weights and the Dense key fix."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    transformer = Transformer(str(base), max_seq_length=75)
    transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    dense = [Dense(layer.weight.shape[1], layer.weight.shape[0], activation_function=torch.nn.GELU(),
                   init_weight=layer.weight.clone(), init_bias=layer.bias.clone(),
                   module_input_name="token_embeddings", module_output_name="token_embeddings")
             for layer in start.dense]
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, *dense, pooling], device="cpu")
    transformer.requires_grad_(not freeze)
    return model


class FixedBatches:
    """A batch sampler that replays given index batches (sgpt-train's draw)."""

    def __init__(self, batches: list[list[int]], batch_size: int) -> None:
        self.batches, self.batch_size, self.drop_last = batches, batch_size, True

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass


def train_sentence_transformers(base, start, triplets, args, out: Path, batches, evaluate_at, score):
    """ST's trainer on ``batches``; returns (model, per-step losses, {step: dev cosine Spearman})."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    model = sentence_transformers_model(base, start, args.freeze_transformer)
    dataset = Dataset.from_dict({"anchor": [t[0] for t in triplets], "positive": [t[1] for t in triplets],
                                 "negative": [t[2] for t in triplets]})
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out), max_steps=len(batches), per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, adam_epsilon=1e-6, weight_decay=0.01, max_grad_norm=1.0,
        lr_scheduler_type="linear", warmup_steps=math.ceil(0.1 * len(batches)), seed=args.seed,
        dataloader_drop_last=True, save_strategy="no", report_to=[], logging_steps=10 ** 6,
        disable_tqdm=True, use_cpu=True,
    )
    losses: list[float] = []
    curve: dict[int, float] = {}

    class RecordingLoss(MultipleNegativesRankingLoss):
        def forward(self, *a, **kw):
            loss = super().forward(*a, **kw)
            losses.append(float(loss.detach()))
            return loss

    class Evaluate(TrainerCallback):
        def on_step_end(self, _args, state, control, **kw):
            if state.global_step in evaluate_at:
                curve[state.global_step] = score(model)
                model.train()

    class Trainer(SentenceTransformerTrainer):
        def get_batch_sampler(self, dataset, batch_size, *a, **kw):
            return FixedBatches(batches, batch_size)

    trainer = Trainer(model=model, args=training_args, train_dataset=dataset,
                      loss=RecordingLoss(model, scale=20.0), callbacks=[Evaluate()])
    trainer.train()
    return model, losses, curve


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, action="append",
                        help="NLI data, repeatable (any layout sgpt-train reads) [default: SNLI + MultiNLI dev "
                             f"jsonl in {DATA / 'nli'}]")
    parser.add_argument("--as-allnli", action="store_true",
                        help="rewrite the .jsonl --data files in AllNLI's .tsv.gz layout first (and train on that)")
    parser.add_argument("--sts-dev", type=Path, default=DEFAULT_STS)
    parser.add_argument("--seed", type=int, default=42, help="model init, triplets and batch order")
    parser.add_argument("--freeze-transformer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2,
                        help="higher than the recipe's 2e-5: a tiny random model learns nothing visible at 2e-5")
    parser.add_argument("--max-steps", "--steps", dest="max_steps", type=int, default=300,
                        help="steps (may exceed an epoch: sgpt-train then runs more epochs)")
    parser.add_argument("--eval-steps", type=int, default=None, help="[default: sgpt-train's, 10%% of an epoch]")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-st", action="store_true", help="only sgpt-train")
    parser.add_argument("--noise", action="store_true",
                        help="also rerun sgpt-train from Dense weights nudged by one float32 ulp: how far fp32 rounding "
                             "differences alone drift over the run (the noise floor)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    data = args.data or DEFAULT_NLI
    missing = [p for p in [*data, args.sts_dev] if not p.is_file()]
    if missing:
        print(f"skipped: {', '.join(map(str, missing))} not found (pass --data / --sts-dev)")
        return 0
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sgpt_qdrant import Encoder
    from sgpt_qdrant.train.batching import NoDuplicatesBatcher
    from sgpt_qdrant.train.evaluate import evaluate, read_sts
    from sgpt_qdrant.train.loop import TrainConfig, Trainer

    sts = read_sts(args.sts_dev, "dev")
    cosine = lambda embed: evaluate(embed, sts)["cosine_spearman"]  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.as_allnli:
            data = [write_allnli(data, tmp / "nli.tsv.gz")]
        base = make_plain_gpt_neo(tmp / "neo", args.hidden, args.layers, args.seed)
        config = TrainConfig(data=[str(p) for p in data], output=str(tmp / "ours"), base_model=str(base),
                             max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             freeze_transformer=args.freeze_transformer, sts_dev=str(args.sts_dev),
                             eval_steps=args.eval_steps, save_steps=0, progress=False, device="cpu")
        trainer = Trainer(config)
        before = cosine(trainer.embed)
        mode = "frozen" if args.freeze_transformer else "unfrozen"
        print(f"GPT-Neo {args.hidden}x{args.layers} (random, seed {args.seed}), {mode}, 5 Dense; "
              f"data {', '.join(p.name for p in data)}: {len(trainer.data.pairs)} pairs → {len(trainer.triplets)} "
              f"triplets, {trainer.steps_per_epoch} steps per epoch; {trainer.total_steps} steps "
              f"({trainer.total_steps / trainer.steps_per_epoch:.2f} epochs) of {args.batch_size}, lr {args.lr:g}, "
              f"warmup {trainer.warmup_steps}, eval every {trainer.eval_steps} steps", flush=True)
        replay = NoDuplicatesBatcher(trainer.triplets, args.batch_size, seed=f"{args.seed}-batches-0")
        batches = [replay.next_indices() for _ in range(trainer.total_steps)]
        t0 = time.perf_counter()
        result = trainer.run()
        ours_time = time.perf_counter() - t0
        ours_final_vectors = trainer.embed(list(dict.fromkeys(sts.sentences1 + sts.sentences2)))
        ours_final = cosine(trainer.embed)
        saved = cosine(Encoder(str(tmp / "ours"), device="cpu").encode)
        losses = [loss for _, loss, _ in trainer.log]
        # Global step of every evaluation (end-of-epoch rows carry steps = -1 in the CSV).
        steps_at = [r["global_step"] for r in result.history]
        print(f"sgpt-train: {ours_time:.0f} s; kept model (best evaluation, step {result.best_step}) "
              f"reloaded from disk: {saved:.4f}; best evaluation's cosine Spearman "
              f"{result.dev['cosine_spearman']:.4f}; final model {ours_final:.4f}", flush=True)

        noise = None
        if args.noise:  # same run from weights one ulp away: how far fp32 rounding alone drifts
            again = Trainer(TrainConfig(**{**config.to_dict(), "output": str(tmp / "noise")}))
            with torch.no_grad():
                for p in again.model.dense.parameters():
                    p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
            again.run()
            again_vectors = again.embed(list(dict.fromkeys(sts.sentences1 + sts.sentences2)))
            noise = (max(abs(a[1] - b[1]) for a, b in zip(trainer.log, again.log)),
                     np.abs(again_vectors - ours_final_vectors).max() / np.abs(ours_final_vectors).max(),
                     abs(cosine(again.embed) - ours_final))

        st_curve: dict[int, float] = {}
        st_losses: list[float] = []
        if not args.skip_st:
            def st_embed(model):
                return lambda texts: model.encode([t.strip() for t in texts], batch_size=64, convert_to_numpy=True)

            t0 = time.perf_counter()
            st_start = cosine(st_embed(sentence_transformers_model(base, trainer.base, args.freeze_transformer)))
            model, st_losses, st_curve = train_sentence_transformers(
                base, trainer.base, trainer.triplets, args, tmp / "st", batches, set(steps_at),
                lambda m: cosine(st_embed(m)))
            st_time = time.perf_counter() - t0
            st_final_vectors = st_embed(model)(list(dict.fromkeys(sts.sentences1 + sts.sentences2)))
            st_final = cosine(st_embed(model))

    print(f"\nSTS-B dev cosine Spearman ({len(sts)} pairs); train loss = mean MNRL loss of the steps since the last "
          "evaluation")
    print(f"{'step':>5} {'epoch':>6} {'train loss':>10} {'sgpt-train':>10} {'ST 6':>8} {'|Δ|':>8}")
    print(f"{0:>5} {0:>6.2f} {'':>10} {before:>10.4f} {'' if args.skip_st else f'{st_start:8.4f}':>8}")
    previous = 0
    for step, row in zip(steps_at, result.history):
        window = losses[previous:step]
        previous = step
        mean = f"{np.mean(window):10.4f}" if window else f"{'':>10}"
        ours = row["cosine_spearman"]
        theirs = st_curve.get(step)
        extra = "" if theirs is None else f"{theirs:8.4f} {abs(ours - theirs):8.1e}"
        print(f"{step:>5} {step / trainer.steps_per_epoch:>6.2f} {mean} {ours:>10.4f} {extra}")
    if not args.skip_st:
        n = min(len(losses), len(st_losses))
        loss_diff = max(abs(a - b) for a, b in zip(losses[:n], st_losses[:n]))
        scale = np.abs(ours_final_vectors).max()
        vec_diff = np.abs(ours_final_vectors - st_final_vectors).max() / scale
        print(f"\nsentence-transformers: {st_time:.0f} s; final model {st_final:.4f} (sgpt-train {ours_final:.4f}, "
              f"|Δ| {abs(st_final - ours_final):.1e})")
        first = max(abs(a - b) for a, b in zip(losses[:10], st_losses[:10]))
        print(f"per-step loss: {n} steps, max |Δ| {loss_diff:.1e} (first 10 steps {first:.1e}); "
              f"final vectors: max |Δ| / max |v| {vec_diff:.1e}")
    if noise is not None:
        print(f"noise floor, sgpt-train from Dense weights one ulp away: per-step loss max |Δ| "
              f"{noise[0]:.1e}; final vectors max |Δ| / max |v| {noise[1]:.1e}; final Spearman |Δ| {noise[2]:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
