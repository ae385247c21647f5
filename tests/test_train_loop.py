"""sgpt-train end to end on a tiny GPT-Neo: the starting model, schedule, weight-decay groups,
frozen weights, learning on a synthetic paraphrase task, the saved directory, resume, the CLI."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sgpt_qdrant.tokens import TruncationWarning
from sgpt_qdrant.train.evaluate import evaluate, read_sts
from sgpt_qdrant.train.loop import TrainConfig, Trainer, train

# Twelve concepts, each with two single-token surface forms. Paraphrases use the other forms, so
# an untrained model (which sees only different tokens) cannot tell them apart: learning can.
SYNONYMS = [("car", "auto"), ("dog", "puppy"), ("house", "home"), ("big", "large"), ("fast", "quick"),
            ("happy", "glad"), ("road", "street"), ("child", "kid"), ("shop", "store"), ("sea", "ocean"),
            ("stone", "rock"), ("film", "movie")]


def _render(concepts, rng):
    return " ".join(SYNONYMS[c][rng.randrange(2)] for c in concepts)


@pytest.fixture(scope="module")
def plain_neo(tmp_path_factory):
    """A plain Hugging Face GPT-Neo directory (no sentence-transformers files), random weights."""
    from transformers import GPTNeoConfig, GPTNeoModel

    from sgpt_qdrant.testing import gpt2_tokenizer

    root = tmp_path_factory.mktemp("plain-neo")
    torch.manual_seed(0)
    config = GPTNeoConfig(vocab_size=50257, hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=128,
                          attention_types=[[["global", "local"], 1]], embed_dropout=0.0, attention_dropout=0.0,
                          resid_dropout=0.0, bos_token_id=50256, eos_token_id=50256)
    GPTNeoModel(config).save_pretrained(root)
    tokenizer = gpt2_tokenizer()
    tokenizer.pad_token = None  # like EleutherAI/gpt-neo-125M: no pad token
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """Synthetic triplets (training) and held-apart STS pairs scored by shared concepts."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = random.Random(0)
    lines = []
    for _ in range(400):
        concepts = rng.sample(range(12), 3)
        others = rng.sample([c for c in range(12) if c not in concepts], 3)
        lines.append("\t".join([_render(concepts, rng), _render(rng.sample(concepts, 3), rng), _render(others, rng)]))
    (root / "triplets.tsv").write_text("\n".join(lines) + "\n")
    rng = random.Random(1)
    rows = []
    for i in range(60):  # form A against form B: no token in common, 0..3 concepts in common
        concepts, shared = rng.sample(range(12), 3), i % 4
        other = rng.sample(concepts, shared) + rng.sample([c for c in range(12) if c not in concepts], 3 - shared)
        s1 = " ".join(SYNONYMS[c][0] for c in concepts)
        s2 = " ".join(SYNONYMS[c][1] for c in other)
        rows.append(f"g\td\t2020\t{i:04d}\t{shared * 5 / 3:.3f}\t{s1}\t{s2}")
    (root / "sts-dev.csv").write_text("\n".join(rows) + "\n")
    return root


def _config(plain_neo, task, out, **kw):
    base = dict(data=[str(task / "triplets.tsv")], output=str(out), base_model=str(plain_neo), batch_size=16,
                lr=1e-2, sts_dev=str(task / "sts-dev.csv"), progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_max_steps_0_writes_the_recipe_starting_model(plain_neo, task, tmp_path):
    from safetensors.torch import load_file

    from sgpt_qdrant import Encoder, load_checkpoint

    result = train(_config(plain_neo, task, tmp_path / "m", max_steps=0, seed=7))
    assert result.steps == 0 and [r["steps"] for r in result.history] == [-1]
    saved = load_checkpoint(str(tmp_path / "m"))
    original = load_file(str(plain_neo / "model.safetensors"))
    assert set(saved.transformer_state) == set(original)
    for name, value in original.items():
        assert torch.equal(saved.transformer_state[name], value)
    torch.manual_seed(7)  # the recipe's new layers: nn.Linear(768, 768) default init, in order
    for layer in saved.dense:
        ref = torch.nn.Linear(32, 32)
        assert torch.equal(layer.weight, ref.weight.detach()) and torch.equal(layer.bias, ref.bias.detach())
        assert layer.activation == "gelu" and layer.before_pooling
    assert len(saved.dense) == 5 and saved.pooling == "mean" and saved.max_seq_length == 75
    assert saved.pad_id == 50256 and saved.tokenizer.pad_token == saved.tokenizer.eos_token
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer"] + ["Dense"] * 5 + ["Pooling"]
    assert json.loads((tmp_path / "m" / "1_Dense" / "config.json").read_text())["key_name"] == "token_embeddings"
    assert json.loads((tmp_path / "m" / "special_tokens_map.json").read_text())["pad_token"] == "<|endoftext|>"
    assert "| Seed | 7 |" in (tmp_path / "m" / "README.md").read_text()
    assert Encoder(str(tmp_path / "m"), device="cpu").encode(["a dog"]).shape == (1, 32)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_causal_lm_directory_drops_lm_head(tmp_path):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    from sgpt_qdrant.testing import gpt2_tokenizer
    from sgpt_qdrant.train.base import start_checkpoint

    config = GPTNeoConfig(vocab_size=50257, hidden_size=16, num_layers=2, num_heads=2, max_position_embeddings=80,
                          attention_types=[[["global", "local"], 1]])
    model = GPTNeoForCausalLM(config)
    model.save_pretrained(tmp_path)
    gpt2_tokenizer().save_pretrained(tmp_path)
    start = start_checkpoint(str(tmp_path), n_dense=2)
    expected = {k[len("transformer."):]: v for k, v in model.state_dict().items() if k.startswith("transformer.")}
    assert set(start.transformer_state) == {k for k in expected if not k.endswith(".attn.attention.bias")}
    assert torch.equal(start.transformer_state["wte.weight"], expected["wte.weight"])
    assert len(start.dense) == 2 and start.dense[0].weight.shape == (16, 16)
    with pytest.raises(ValueError, match="--max-seq-length: 100 must be in 1..80"):
        start_checkpoint(str(tmp_path), max_seq_length=100)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_schedule_groups_and_frozen_transformer(plain_neo, task, tmp_path):
    trainer = Trainer(_config(plain_neo, task, tmp_path / "s", max_steps=10, warmup_ratio=0.25, eval_steps=0,
                              sts_dev=None, lr=1e-3))
    dense = {id(p) for layer in trainer.model.dense for p in layer.parameters()}
    in_optimizer = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in in_optimizer} == dense and len(in_optimizer) == 10
    decay = {g["weight_decay"]: g["names"] for g in trainer.groups}
    assert decay[0.01] == [f"dense.{i}.linear.weight" for i in range(5)]
    assert decay[0.0] == [f"dense.{i}.linear.bias" for i in range(5)]
    assert trainer.optimizer.defaults["eps"] == 1e-6
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    # Warmup ceil(0.25 * 10) = 3 steps from 0, then linear decay to 0 at step 10.
    expected = [1e-3 * s / 3 if s < 3 else 1e-3 * (10 - s) / 7 for s in range(10)]
    np.testing.assert_allclose([lr for _, _, lr in trainer.log], expected, rtol=1e-9, atol=1e-15)
    after = trainer.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("transformer."))
    assert all(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("dense."))
    assert all(p.grad is None for p in trainer.model.transformer.parameters())


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_unfrozen_trains_everything_with_decay_groups(plain_neo, task, tmp_path):
    trainer = Trainer(_config(plain_neo, task, tmp_path / "u", max_steps=2, freeze_transformer=False, sts_dev=None,
                              lr=1e-3))
    groups = {g["weight_decay"]: set(g["names"]) for g in trainer.groups}
    names = {n for n, _ in trainer.model.named_parameters()}
    no_decay = {n for n in names if n.endswith(".bias") or ".ln_" in n or n.startswith("transformer.ln_f")}
    assert groups[0.0] == no_decay and groups[0.01] == names - no_decay
    assert "transformer.wte.weight" in groups[0.01] and "transformer.h.0.ln_1.weight" in groups[0.0]
    wte = trainer.model.transformer.wte.weight.detach().clone()
    trainer.run()
    assert not torch.equal(wte, trainer.model.transformer.wte.weight)


@pytest.mark.slow
def test_training_improves_held_apart_spearman_and_saved_dir_matches(plain_neo, task, tmp_path):
    from sgpt_qdrant import SGPTEmbedding

    trainer = Trainer(_config(plain_neo, task, tmp_path / "t", epochs=4, eval_steps=0))
    before = evaluate(trainer.embed, trainer.sts_dev)["cosine_spearman"]
    result = trainer.run()
    after = result.history[-1]["cosine_spearman"]
    assert result.steps == 100 and len(result.history) == 4  # one evaluation per epoch
    assert trainer.log[-1][1] < trainer.log[0][1] - 1.0  # loss fell
    assert before < 0.25 and after > before + 0.3, (before, after)
    # The kept model is the best of the four epoch-end evaluations.
    best = max(result.history, key=lambda r: max(r[k] for k in r if k.endswith("spearman")))
    assert result.dev == {k: v for k, v in best.items() if k not in ("epoch", "steps", "global_step")}
    # Written out, the final in-memory model gives the same vectors through SGPTEmbedding.
    trainer.output = tmp_path / "final"
    trainer.save_model()
    texts = ["dog big car", "a puppy on the street", "  happy kid  ", "film", "x " * 100]
    embedding = SGPTEmbedding(model_name=str(tmp_path / "final"), device="cpu")
    with pytest.warns(TruncationWarning):  # "x " * 100 is cut at 75 tokens on both sides, on purpose
        saved = np.asarray(embedding.get_text_embedding_batch(texts))
    np.testing.assert_allclose(saved, trainer.embed(texts), atol=1e-5, rtol=0)
    assert np.abs(saved).max() > 1e-3
    # sgpt-eval scores the saved directory as the trainer scored it in memory.
    from sgpt_qdrant.train.cli import eval_main

    out = CliRunner().invoke(eval_main, [str(tmp_path / "t"), "--sts", str(task / "sts-dev.csv"), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    scored = json.loads(out.output[out.output.index("{"):])
    [metrics] = scored.values()
    for key, value in best.items():
        if key.endswith(("spearman", "pearson")):
            assert metrics[key] == pytest.approx(value, abs=1e-5)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_max_steps_beyond_an_epoch_runs_more_epochs_on_one_schedule(plain_neo, task, tmp_path, caplog):
    """400 triplets in batches of 32: 12 steps an epoch; 30 steps = two epochs and 6 steps, evaluated
    at each epoch's end and the run's end; one warmup + decay spanning all 30 (Hugging Face's meaning)."""
    caplog.set_level("INFO", logger="sgpt_qdrant.train.loop")
    trainer = Trainer(_config(plain_neo, task, tmp_path / "e", max_steps=30, batch_size=32, eval_steps=0, lr=1e-3))
    result = trainer.run()
    assert result.steps == trainer.step == 30 and trainer.steps_per_epoch == 12
    assert [(r["epoch"], r["steps"], r["global_step"]) for r in result.history] == [(0, -1, 12), (1, -1, 24),
                                                                                     (2, -1, 30)]
    warmup = 3  # ceil(0.1 * 30)
    expected = [1e-3 * s / warmup if s < warmup else 1e-3 * (30 - s) / (30 - warmup) for s in range(30)]
    np.testing.assert_allclose([lr for _, _, lr in trainer.log], expected, rtol=1e-9, atol=1e-15)
    messages = [r.getMessage() for r in caplog.records]
    assert any("→ 30 steps (2.50 epochs of 12)" in m and "STS dev at each epoch's end" in m for m in messages)
    labels = [m.split(":")[0] for m in messages if m.startswith("STS dev")]
    assert labels == ["STS dev at step 12/30 (end of epoch 1)", "STS dev at step 24/30 (end of epoch 2)",
                      "STS dev at step 30/30 (end of training)"]


@pytest.mark.slow
def test_the_best_evaluation_is_the_saved_model(plain_neo, task, tmp_path):
    """From step 50 on, put the untrained Dense layers back after every step: the last evaluation
    scores worse than the best, and the folder must hold the best (scored here through the runtime
    Encoder, not the trainer)."""
    from sgpt_qdrant import Encoder

    def untrain(trainer):
        if trainer.step >= 50:
            with torch.no_grad():
                for layer, start in zip(trainer.model.dense, trainer.base.dense):
                    layer.linear.weight.copy_(start.weight)
                    layer.linear.bias.copy_(start.bias)

    result = train(_config(plain_neo, task, tmp_path / "b", max_steps=75, eval_steps=0), on_step=untrain)
    scores = [max(r[k] for k in r if k.endswith("spearman")) for r in result.history]
    assert [r["global_step"] for r in result.history] == [25, 50, 75]
    best = int(np.argmax(scores))
    assert best < 2 and scores[best] > scores[2] + 0.1, scores
    saved = evaluate(Encoder(str(tmp_path / "b"), device="cpu").encode, read_sts(task / "sts-dev.csv"))
    for key, value in result.history[best].items():
        if key.endswith(("spearman", "pearson")):
            assert saved[key] == pytest.approx(value, abs=1e-5)
    assert result.best_step == (best, -1)
    assert f"kept model: step {25 * (best + 1)} of 75" in (tmp_path / "b" / "README.md").read_text()


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_progress_without_a_terminal_is_plain_log_lines(plain_neo, task, tmp_path, caplog, capsys):
    caplog.set_level("INFO", logger="sgpt_qdrant.train.loop")
    train(_config(plain_neo, task, tmp_path / "p", max_steps=40, batch_size=4, sts_dev=None, progress=True))
    assert "\r" not in capsys.readouterr().err  # no tqdm bar when stderr is not a terminal
    messages = [r.getMessage() for r in caplog.records]
    steps = [m.split()[1] for m in messages if m.startswith("step ")]
    assert steps == [f"{s}/40" for s in range(2, 41, 2)] and "loss" in messages[-1]
    assert any("no evaluation (the final model is kept)" in m for m in messages)
    assert not any("every epoch steps" in m or "step -1" in m for m in messages)


def _dense_state(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items() if k.startswith("dense.")}


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_result(plain_neo, task, tmp_path):
    common = dict(max_steps=9, eval_steps=3, save_steps=2, keep_checkpoints=True)
    full = Trainer(_config(plain_neo, task, tmp_path / "full", **common))
    full.run()

    def stop_at_5(trainer):  # as a first Ctrl-C does: finish the step, write a checkpoint, stop
        if trainer.step == 5:
            trainer.stop.requested = True

    first = train(_config(plain_neo, task, tmp_path / "cut", **common), on_step=stop_at_5)
    assert first.interrupted and first.steps == 5
    assert (tmp_path / "cut" / "checkpoints" / "step-5" / "trainer_state.pt").is_file()
    resumed = Trainer(_config(plain_neo, task, tmp_path / "cut", resume="auto", **common))
    assert resumed.step == 5
    resumed.run()

    def crash_at_5(trainer):
        if trainer.step == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(plain_neo, task, tmp_path / "crash", **common), on_step=crash_at_5)
    after_crash = Trainer(_config(plain_neo, task, tmp_path / "crash", **common,
                                  resume=str(tmp_path / "crash" / "checkpoints")))
    assert after_crash.step == 4  # the last checkpoint before the crash
    after_crash.run()

    reference = _dense_state(full)
    for other in (resumed, after_crash):
        state = _dense_state(other)
        for k, v in reference.items():
            torch.testing.assert_close(state[k], v, atol=1e-6, rtol=0)
        assert other.history == full.history
    dev_csv = "eval/similarity_evaluation_sts-dev_results.csv"
    full_rows = (tmp_path / "full" / dev_csv).read_text().splitlines()
    assert len(full_rows) == 1 + 2 + 1  # header, steps 3 and 6, the end (step 9, evaluated once)
    for name in ("cut", "crash"):
        rows = (tmp_path / name / dev_csv).read_text().splitlines()
        assert [r.split(",")[:2] for r in rows] == [r.split(",")[:2] for r in full_rows]
        np.testing.assert_allclose(np.loadtxt(tmp_path / name / dev_csv, delimiter=",", skiprows=1),
                                   np.loadtxt(tmp_path / "full" / dev_csv, delimiter=",", skiprows=1), atol=1e-6)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_resume_refuses_other_settings(plain_neo, task, tmp_path):
    common = dict(max_steps=4, save_steps=2, eval_steps=0, sts_dev=None)
    train(_config(plain_neo, task, tmp_path / "r", **common), on_step=lambda t: setattr(t.stop, "requested", True))
    with pytest.raises(ValueError, match="lr=0.01, this run has 0.02"):
        Trainer(_config(plain_neo, task, tmp_path / "r", resume="auto", **{**common, "lr": 2e-2}))
    with pytest.raises(FileNotFoundError, match="no resume checkpoint"):
        Trainer(_config(plain_neo, task, tmp_path / "empty", resume="auto", **common))


@pytest.mark.slow
def test_cli_train_and_errors(plain_neo, task, tmp_path):
    from sgpt_qdrant.train.cli import main

    out = tmp_path / "cli"
    args = ["--data", str(task / "triplets.tsv"), "--output", str(out), "--base-model", str(plain_neo),
            "--max-steps", "3", "--batch-size", "8", "--sts-dev", str(task / "sts-dev.csv"),
            "--sts-test", str(task / "sts-dev.csv"), "--no-progress", "--device", "cpu", "--dense", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["steps"] == 3 and set(summary["test"]) == set(summary["dev"])
    assert (out / "eval" / "similarity_evaluation_sts-test_results.csv").read_text().splitlines()[1].startswith("-1,-1,")
    assert not (out / "checkpoints").exists()
    card = (out / "README.md").read_text()
    assert "| Steps | 3 of 3 planned" in card and "| test (kept model) |" in card and "2 × Dense 32→32" in card
    # No local directories in a card meant for publishing; a usage line that loads the folder by a path.
    assert str(tmp_path) not in card and "`triplets.tsv`:" in card and "split" not in card.split("| Data |")[1]
    assert 'Encoder("./cli")' in card

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already holds a model" in again.output and "--overwrite" in again.output
    missing = CliRunner().invoke(main, [*args, "--overwrite", "--data", str(tmp_path / "nope.tsv")])
    assert missing.exit_code == 2 and "nope.tsv: no such data file" in missing.output
    assert math.isclose(summary["best_score"], max(v for k, v in summary["dev"].items() if k.endswith("spearman")))


def test_cli_refuses_a_nan_sts_score_in_one_line(plain_neo, task, tmp_path):
    from sgpt_qdrant.train.cli import main

    sts = tmp_path / "sts-dev.csv"
    rows = (task / "sts-dev.csv").read_text().splitlines()
    fields = rows[6].split("\t")
    fields[4] = "nan"
    rows[6] = "\t".join(fields)
    sts.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["--data", str(task / "triplets.tsv"), "--output", str(tmp_path / "o"),
                                       "--base-model", str(plain_neo), "--sts-dev", str(sts), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"Error: {sts}:7: score 'nan' is not a number in 0..5"]


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.parametrize("damage", ["truncated", "empty", "not a checkpoint"])
def test_a_corrupt_resume_checkpoint_is_named_in_one_line(plain_neo, task, tmp_path, damage):
    from sgpt_qdrant.train.cli import main

    args = ["--data", str(task / "triplets.tsv"), "--output", str(tmp_path / "r"), "--base-model", str(plain_neo),
            "--max-steps", "4", "--batch-size", "8", "--save-steps", "2", "--lr", "1e-2", "--device", "cpu",
            "--no-progress"]
    train(_config(plain_neo, task, tmp_path / "r", max_steps=4, batch_size=8, save_steps=2, sts_dev=None),
          on_step=lambda t: setattr(t.stop, "requested", t.step == 2))
    state = tmp_path / "r" / "checkpoints" / "step-2" / "trainer_state.pt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:1000])
    elif damage == "empty":
        state.write_bytes(b"")
    else:
        torch.save([1, 2, 3], state)
    result = CliRunner().invoke(main, [*args, "--resume"])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: --resume: {state} ") and "Traceback" not in line


@pytest.mark.slow
def test_torchrun_two_processes_and_resume(plain_neo, task, tmp_path):
    """Two gloo ranks through torchrun (each rank its own batches, gathered loss), then a resume
    from the mid-run checkpoint, which ends on the same weights."""
    import subprocess
    import sys

    def run(out, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "sgpt_qdrant.train.cli", "--data", str(task / "triplets.tsv"), "--output", str(out),
               "--base-model", str(plain_neo), "--max-steps", "4", "--batch-size", "8", "--save-steps", "2",
               "--lr", "1e-2", "--device", "cpu", "--no-progress", *extra]
        env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    first = run(tmp_path / "a", "--keep-checkpoints")
    assert json.loads(first.stdout)["steps"] == 4  # printed once, by rank 0
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints" / "step-2").iterdir()) == [
        "rank0.pt", "rank1.pt", "trainer_state.pt"]
    assert "8 per process × 2 process(es) = 16 anchors per step, each scored against 32" in (
        tmp_path / "a" / "README.md").read_text()
    run(tmp_path / "b", "--resume", str(tmp_path / "a" / "checkpoints" / "step-2"))
    for i in range(1, 6):
        a, b = (torch.load(tmp_path / x / f"{i}_Dense" / "pytorch_model.bin") for x in ("a", "b"))
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_sgpt_directory_is_trained_further_as_it_is(tiny_model_dir):
    from sgpt_qdrant import load_checkpoint
    from sgpt_qdrant.train.base import start_checkpoint

    start, saved = start_checkpoint(str(tiny_model_dir), n_dense=2), load_checkpoint(str(tiny_model_dir))
    assert len(start.dense) == len(saved.dense) == 5  # its own layers, not 2 new ones
    for a, b in zip(start.dense, saved.dense):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
