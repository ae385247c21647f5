"""The model card: no local directories, the split named only for files that have one."""

from __future__ import annotations

from sgpt_qdrant.train.card import RunFacts, render
from sgpt_qdrant.train.config import TrainConfig


def test_card_names_files_not_paths_and_the_split_only_where_it_was_used(tmp_path):
    base = tmp_path / "my-neo"
    base.mkdir()
    data = ["/home/someone/data/AllNLI.tsv.gz", "/home/someone/data/snli.jsonl", "hf:org/set"]
    config = TrainConfig(data=data, output="/home/someone/runs/train-out", base_model=str(base), split="dev")
    facts = RunFacts(sources=data, split_sources=[data[0], data[2]], pairs=10, ready_triplets=2, triplets=8,
                     trainable=100, n_dense=5, hidden=32, dimension=32, pooling="mean", max_length=75, world=1,
                     steps=3, total_steps=3, steps_per_epoch=2, warmup_steps=1, eval_steps=0, precision="fp32",
                     has_dev=False)
    card = render(config, facts)
    assert "/home/someone" not in card and str(tmp_path) not in card
    assert "| Data | `AllNLI.tsv.gz` (split `dev`), `snli.jsonl`, `hf:org/set` (split `dev`): 10 pairs" in card
    assert 'Encoder("./train-out")' in card and "`my-neo` (a local directory)" in card
    assert "| Evaluation | none (the final model is kept) |" in card
