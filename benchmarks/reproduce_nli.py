"""Reproduce the SGPT NLI fine-tune on a tiny GPT-Neo, with sgpt-train and with sentence-transformers.

Trains a random tiny GPT-Neo (frozen) + 5 Dense layers on the NLI dev files in
``../shared/data/nli`` (SNLI + MultiNLI, the recipe's triplet construction) and prints STS-B dev
Spearman before and after, for:

1. ``sgpt-train`` (this project: plain torch + transformers);
2. sentence-transformers 6.x (``SentenceTransformerTrainer``, ``MultipleNegativesRankingLoss``,
   the Dense ``module_input_name``/``module_output_name`` = ``"token_embeddings"`` fix), its own
   NoDuplicates sampler, same data, seed, initial weights and hyperparameters: agrees within noise;
3. sentence-transformers again, fed the very batches sgpt-train drew: agrees to float noise,
   which pins any difference in (2) on the batch order alone.

Needs the ``repro`` extra (sentence-transformers, datasets, accelerate). CPU, ~5-10 minutes:

    python benchmarks/reproduce_nli.py --steps 300
"""

from __future__ import annotations

import argparse
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


def sentence_transformers_model(base: Path, start):
    """sentence-transformers 6.x model with our starting Dense weights and the Dense key fix."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    transformer = Transformer(str(base), max_seq_length=75)
    transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    dense = [Dense(layer.in_features, layer.out_features, activation_function=torch.nn.GELU(),
                   init_weight=layer.weight.clone(), init_bias=layer.bias.clone(),
                   module_input_name="token_embeddings", module_output_name="token_embeddings")
             for layer in start.dense]
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, *dense, pooling], device="cpu")
    for p in transformer.parameters():  # --freeze
        p.requires_grad_(False)
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


def train_sentence_transformers(base, start, triplets, args, out: Path, batches=None):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    model = sentence_transformers_model(base, start)
    dataset = Dataset.from_dict({"anchor": [t[0] for t in triplets], "positive": [t[1] for t in triplets],
                                 "negative": [t[2] for t in triplets]})
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, adam_epsilon=1e-6, weight_decay=0.01, max_grad_norm=1.0,
        lr_scheduler_type="linear", warmup_steps=math.ceil(0.1 * args.steps), seed=args.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES, dataloader_drop_last=True, save_strategy="no",
        report_to=[], logging_steps=max(args.steps // 5, 1), disable_tqdm=True, use_cpu=True,
    )

    class Trainer(SentenceTransformerTrainer):
        def get_batch_sampler(self, dataset, batch_size, *a, **kw):
            if batches is None:
                return super().get_batch_sampler(dataset, batch_size, *a, **kw)
            return FixedBatches(batches, batch_size)

    loss = MultipleNegativesRankingLoss(model, scale=20.0)
    Trainer(model=model, args=training_args, train_dataset=dataset, loss=loss).train()
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2,
                        help="higher than the recipe's 2e-5: a tiny random model learns nothing visible at 2e-5 "
                             "(and loses STS at 2e-4..2e-3 before it gains)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-st", action="store_true", help="only sgpt-train")
    parser.add_argument("--order-seeds", type=int, default=3,
                        help="extra sgpt-train runs that differ only in batch order: the noise level")
    args = parser.parse_args()

    nli = [DATA / "nli" / "snli_1.0_dev_gold.jsonl", DATA / "nli" / "multinli_1.0_dev_matched_gold.jsonl"]
    sts_dev = DATA / "stsbenchmark" / "sts-dev.csv"
    if not all(p.is_file() for p in [*nli, sts_dev]):
        print(f"skipped: the NLI / STS-B files are not in {DATA} (expected {', '.join(p.name for p in nli)}, "
              "stsbenchmark/sts-dev.csv)")
        return 0
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sgpt_qdrant.train.batching import NoDuplicatesBatcher
    from sgpt_qdrant.train.evaluate import evaluate, read_sts
    from sgpt_qdrant.train.loop import TrainConfig, Trainer

    sts = read_sts(sts_dev, "dev")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = make_plain_gpt_neo(tmp / "neo", args.hidden, args.layers, args.seed)
        config = TrainConfig(data=[str(p) for p in nli], output=str(tmp / "ours"), base_model=str(base),
                             max_steps=args.steps, epochs=100, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             sts_dev=str(sts_dev), eval_steps=0, progress=False, device="cpu")
        t0 = time.perf_counter()
        trainer = Trainer(config)
        before = evaluate(trainer.embed, sts)["cosine_spearman"]
        print(f"GPT-Neo {args.hidden}x{args.layers} (random), frozen, 5 Dense; {len(trainer.data.pairs)} NLI pairs → "
              f"{len(trainer.triplets)} triplets ({trainer.steps_per_epoch} batches of {args.batch_size}); "
              f"{args.steps} steps, lr {args.lr:g}, warmup {trainer.warmup_steps}, seed {args.seed}")
        # sgpt-train's batch draw, replayed for sentence-transformers run 3 (same seed string).
        replay = NoDuplicatesBatcher(trainer.triplets, args.batch_size, seed=f"{args.seed}-batches-0")
        our_batches = [replay.next_indices() for _ in range(args.steps)]
        trainer.run()
        after = trainer.history[-1]["cosine_spearman"]
        rows.append(("sgpt-train", before, after, time.perf_counter() - t0))
        noise = []
        for k in range(args.order_seeds):  # same model, data and settings; another batch order
            t0 = time.perf_counter()
            other = Trainer(TrainConfig(**{**config.to_dict(), "output": str(tmp / f"order{k}")}))
            other.batcher = NoDuplicatesBatcher(other.triplets, args.batch_size, seed=f"order-{k}")
            noise.append(other.run().history[-1]["cosine_spearman"])
            rows.append((f"sgpt-train, batch order {k + 1}", before, noise[-1], time.perf_counter() - t0))
        if not args.skip_st:
            def st_embed(model):
                return lambda texts: model.encode([t.strip() for t in texts], batch_size=64, convert_to_numpy=True)

            for label, batches in (("sentence-transformers 6 (own NoDuplicates sampler)", None),
                                   ("sentence-transformers 6 (sgpt-train's batches)", our_batches)):
                t0 = time.perf_counter()
                st_before = evaluate(st_embed(sentence_transformers_model(base, trainer.base)), sts)["cosine_spearman"]
                model = train_sentence_transformers(base, trainer.base, trainer.triplets, args, tmp / "st", batches)
                st_after = evaluate(st_embed(model), sts)["cosine_spearman"]
                rows.append((label, st_before, st_after, time.perf_counter() - t0))
    print(f"\nSTS-B dev cosine Spearman ({len(sts)} pairs)")
    print(f"{'trainer':<52} {'before':>8} {'after':>8} {'time':>7}")
    for label, b, a, t in rows:
        print(f"{label:<52} {b:8.4f} {a:8.4f} {t:6.0f}s")
    ours = [rows[0][2], *noise]
    if len(ours) > 1:
        print(f"\nsgpt-train over {len(ours)} batch orders: mean {np.mean(ours):.4f}, std {np.std(ours, ddof=1):.4f}")
    if not args.skip_st:
        print(f"after: sgpt-train − ST (own sampler) = {rows[0][2] - rows[-2][2]:+.4f}; "
              f"sgpt-train − ST (same batches) = {rows[0][2] - rows[-1][2]:+.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
