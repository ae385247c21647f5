"""The training loop of the SGPT NLI recipe: frozen GPT-Neo, Dense layers trained with MNRL.

The frozen transformer runs once per text under ``inference_mode`` (bf16/fp16 on GPUs); its
hidden states are cloned out of inference mode and only the Dense head runs with autograd, so
neither gradients nor optimizer state exist for frozen weights. Evaluation, best-model
selection, the output layout and the schedule follow sentence-transformers' 2022 ``fit`` as the
recipe used it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import checkpoint as ckpt
from ..engine import pick_device
from ..model import SGPTModel
from . import distributed
from .base import DEFAULT_BASE, start_checkpoint
from .batching import NoDuplicatesBatcher
from .card import write_model_card
from .data import Triplet, TrainingData, load, training_triplets
from .evaluate import append_csv, evaluate, format_metrics, main_score, read_sts
from .loss import mnrl

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STATE_FILE = "trainer_state.pt"


@dataclass
class TrainConfig:
    """Every default is the recipe's (SGPT-125M-mean-nli-linearthenpool5)."""

    data: list[str]
    output: str
    base_model: str = DEFAULT_BASE
    n_dense: int = 5
    pooling: str = "mean"
    max_seq_length: int = 75
    freeze_transformer: bool = True
    batch_size: int = 64
    epochs: int = 1
    max_steps: int | None = None  # cut the run short (the schedule spans the cut run); 0 = untrained model
    lr: float = 2e-5
    adam_eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    scale: float = 20.0
    seed: int = 42
    split: str = "train"
    sts_dev: str | None = None
    sts_test: str | None = None
    eval_steps: int | None = None  # None: 10% of an epoch; 0: only at the end of each epoch
    save_steps: int | None = None  # resume checkpoints; None: as eval_steps; 0: none
    keep_checkpoints: bool = False  # keep output/checkpoints/ after a finished run
    resume: str | None = None  # a checkpoint folder, or "auto" for the latest in output/checkpoints
    overwrite: bool = False  # allow an output directory that already holds a model
    device: str | None = None
    precision: str = "auto"  # auto: bf16 (fp16 without bf16) on CUDA, fp32 elsewhere
    eval_batch_size: int = 64
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    output: Path
    steps: int
    total_steps: int
    best_score: float | None = None
    best_step: tuple[int, int] | None = None  # (epoch, steps) of the kept model
    dev: dict[str, float] | None = None  # metrics of the kept model
    test: dict[str, float] | None = None
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def _pick_precision(device: torch.device, precision: str) -> torch.dtype:
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("--precision: fp16 is not supported on the CPU; use fp32 or bf16")
    return PRECISIONS[precision]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two AdamW groups: no weight decay for biases and LayerNorm."""
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full = f"{module_name}.{name}" if module_name else name
            (no_decay if name == "bias" or isinstance(module, nn.LayerNorm) else decay).append((full, param))
    return [
        {"params": [p for _, p in decay], "names": [n for n, _ in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in no_decay], "names": [n for n, _ in no_decay], "weight_decay": 0.0},
    ]


def fingerprint(triplets: Sequence[Triplet]) -> str:
    """Identifies the training set, so a resume cannot silently continue on other data."""
    digest = hashlib.sha1()
    for triplet in triplets:
        digest.update("\x1f".join(triplet).encode("utf-8"))
        digest.update(b"\x1e")
    return f"{len(triplets)}:{digest.hexdigest()}"


class _StopFlag:
    """First Ctrl-C: finish the current step, write a resume checkpoint, stop. Second: abort."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: stopping after this step and writing a resume checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _no_interrupt():
    """Defer Ctrl-C while files are swapped into place."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def publish(staging: Path, target: Path) -> None:
    """Move every entry of ``staging`` into ``target``, replacing what is there; drop ``staging``."""
    target.mkdir(parents=True, exist_ok=True)
    with _no_interrupt():
        for entry in sorted(staging.iterdir()):
            dest = target / entry.name
            if dest.is_dir() and not dest.is_symlink():
                old = target / f".{entry.name}.old"
                shutil.rmtree(old, ignore_errors=True)
                dest.rename(old)
                entry.rename(dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, dest)
        shutil.rmtree(staging, ignore_errors=True)


class Trainer:
    """One training run; :meth:`run` does everything, the pieces are public for tests."""

    def __init__(self, config: TrainConfig, on_step: Callable[[Trainer], None] | None = None) -> None:
        self.config = config
        self.on_step = on_step
        self.output = Path(config.output)
        self.device = distributed.init_from_env(pick_device(config.device) if config.device else None)
        if self.device is None:
            self.device = pick_device(None)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        self.dtype = _pick_precision(self.device, config.precision)
        self.amp = self.dtype != torch.float32
        self.frozen = config.freeze_transformer
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if getattr(config, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be at least 1")
        if config.max_steps is not None and config.max_steps < 0:
            raise ValueError("--max-steps: must be 0 or more")
        # Read the evaluation files first: a typo there should not cost a data load.
        self.sts_dev = read_sts(config.sts_dev, "dev", name="sts-dev") if config.sts_dev else None
        self.sts_test = read_sts(config.sts_test, "test", name="sts-test") if config.sts_test else None

        if not config.resume and not config.overwrite and self.output.is_dir() and any(
                (self.output / name).exists() for name in ("modules.json", "checkpoints", "eval")):
            raise FileExistsError(f"--output: {self.output} already holds a model or run; pass --overwrite to "
                                  "replace it or --resume to continue it")
        torch.manual_seed(config.seed)
        self.base = start_checkpoint(config.base_model, config.n_dense, config.max_seq_length,
                                     config.pooling, config.seed)
        self.tokenizer = self.base.tokenizer
        self.max_length = self.base.max_seq_length
        self.model = SGPTModel(self.base).to(self.device)
        self.model.transformer.requires_grad_(not self.frozen)
        if self.frozen and self.amp:  # frozen weights are only read: keep them in the low precision
            self.model.transformer.to(self.dtype)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("nothing to train: the transformer is frozen and there are no Dense layers")

        self.data: TrainingData = load(config.data, config.split)
        self.triplets = training_triplets(self.data, config.seed)
        self.fingerprint = fingerprint(self.triplets)
        self.batcher = NoDuplicatesBatcher(self.triplets, config.batch_size, seed=f"{config.seed}-batches-{self.rank}")
        self.steps_per_epoch = len(self.batcher)
        total = self.steps_per_epoch * config.epochs
        self.total_steps = total if config.max_steps is None else min(total, config.max_steps)
        self.warmup_steps = math.ceil(self.total_steps * config.warmup_ratio)
        epoch_len = min(self.steps_per_epoch, self.total_steps) if self.total_steps else self.steps_per_epoch
        self.eval_steps = int(epoch_len * 0.1) if config.eval_steps is None else config.eval_steps
        self.save_steps = self.eval_steps if config.save_steps is None else config.save_steps

        from transformers import get_linear_schedule_with_warmup

        self.groups = parameter_groups(self.model, config.weight_decay)
        self.optimizer = torch.optim.AdamW(
            [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in self.groups if g["params"]],
            lr=config.lr, eps=config.adam_eps,
        )
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, self.warmup_steps, max(self.total_steps, 1))
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

        self.step = 0
        self.best_score: float | None = None
        self.best_step: tuple[int, int] | None = None
        self.best_metrics: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []  # evaluations, as the CSV has them
        self.log: list[tuple[int, float, float]] = []  # (step, loss, lr) of every step this process ran
        self.stop = _StopFlag()
        if config.resume:
            self.load_state(self.find_resume(config.resume))

    # ----------------------------------------------------------------------------- forward

    def _autocast(self, enabled: bool = True):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.amp and enabled)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask, tokenised exactly as the runtime Encoder does."""
        ids = self.tokenizer([t.strip() for t in texts], add_special_tokens=False)["input_ids"]
        ids = [x[: self.max_length] for x in ids]
        width = max(1, max(len(x) for x in ids))
        input_ids = torch.full((len(ids), width), self.base.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            mask[row, : len(x)] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def embed_for_training(self, texts: Sequence[str]) -> torch.Tensor:
        input_ids, mask = self.tokenize(texts)
        if self.frozen:
            with torch.inference_mode():
                hidden = self.model.transformer(input_ids)
            hidden = hidden.clone()  # an ordinary tensor that autograd may save
            with self._autocast():
                return self.model.head(hidden, mask)
        with self._autocast():
            return self.model(input_ids, mask)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of the in-memory model (what the saved directory will give), float32."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.base.dimension), dtype=np.float32)
        size = self.config.eval_batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            input_ids, mask = self.tokenize([texts[i] for i in batch])
            with self._autocast(enabled=not self.frozen):
                hidden = self.model.transformer(input_ids)
            out[batch] = self.model.head(hidden.float(), mask).float().cpu().numpy()
        return out

    # ----------------------------------------------------------------------------- training

    def train_step(self, batch: Sequence[Triplet]) -> float:
        anchors, positives, negatives = (list(col) for col in zip(*batch))
        loss = mnrl(self.embed_for_training(anchors), self.embed_for_training(positives),
                    self.embed_for_training(negatives), scale=self.config.scale)
        lr = self.scheduler.get_last_lr()[0]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        distributed.average_gradients(self.params)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        if self.scaler is not None:
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = self.scaler.get_scale() < scale_before
        else:
            self.optimizer.step()
            skipped = False
        self.optimizer.zero_grad(set_to_none=True)
        if not skipped:
            self.scheduler.step()
        value = float(loss.detach())
        self.log.append((self.step + 1, value, lr))
        return value

    def run(self) -> TrainResult:
        """Train, evaluate, keep the best model in the output directory, then test it."""
        cfg = self.config
        if self.main:
            self.output.mkdir(parents=True, exist_ok=True)
            if not cfg.resume:
                shutil.rmtree(self.output / "eval", ignore_errors=True)
            self._rewrite_csv()
            log.info(
                "%d training triplets (%d pairs, %d ready-made) → %d steps of %d × %d process(es); warmup %d; "
                "eval every %s steps", len(self.triplets), len(self.data.pairs), len(self.data.triplets),
                self.total_steps, cfg.batch_size, self.world, self.warmup_steps, self.eval_steps or "epoch",
            )
        bar = None
        if self.main and cfg.progress and self.total_steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="training", dynamic_ncols=True)
        interrupted = False
        try:
            with self.stop:
                if self.total_steps == 0 and self.step == 0:
                    self._after_epoch(0)
                while self.step < self.total_steps:
                    loss = self.train_step(self.batcher.next_batch())
                    self.step += 1
                    epoch, in_epoch = divmod(self.step - 1, self.steps_per_epoch)
                    in_epoch += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.log[-1][2]:.3g}")
                    if self.eval_steps and in_epoch % self.eval_steps == 0:
                        self._evaluate(epoch, in_epoch)
                    if in_epoch == self.steps_per_epoch or self.step == self.total_steps:
                        self._after_epoch(epoch)
                    if self.on_step is not None:
                        self.on_step(self)
                    if self._should_stop():
                        interrupted = self.step < self.total_steps
                        if interrupted:
                            self.save_state()
                        break
                    if self.save_steps and self.step % self.save_steps == 0 and self.step < self.total_steps:
                        self.save_state()
        finally:
            if bar is not None:
                bar.close()
        result = TrainResult(self.output, self.step, self.total_steps, self.best_score, self.best_step,
                             self.best_metrics, None, interrupted, list(self.history))
        if interrupted:
            return result
        if self.main:
            if self.sts_dev is None:
                self.save_model()
            if self.sts_test is not None:
                result.test = self.test()
            self.write_card(result.test)
            if not cfg.keep_checkpoints:
                shutil.rmtree(self.output / "checkpoints", ignore_errors=True)
        distributed.barrier()
        return result

    def _should_stop(self) -> bool:
        flag = self.stop.requested
        if distributed.world_size() > 1:  # all ranks must stop at the same step
            t = torch.tensor([int(flag)], device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _after_epoch(self, epoch: int) -> None:
        if self.sts_dev is not None:
            self._evaluate(epoch, -1)

    # ----------------------------------------------------------------------------- evaluation

    def _evaluate(self, epoch: int, steps: int) -> None:
        if self.sts_dev is None:
            return
        if self.main:
            metrics = evaluate(self.embed, self.sts_dev)
            self.history.append({"epoch": epoch, "steps": steps, **metrics})
            append_csv(self.output / "eval", self.sts_dev, epoch, steps, metrics)
            score = main_score(metrics)
            improved = self.best_score is None or score > self.best_score
            msg = f"STS dev after epoch {epoch} step {steps}: {format_metrics(metrics)}"
            log.info(msg + ("  (best so far: saved)" if improved else ""))
            if improved:
                self.best_score, self.best_step, self.best_metrics = score, (epoch, steps), metrics
                self.save_model()
        distributed.barrier()

    def test(self) -> dict[str, float]:
        """STS test scores of the kept model, read back from the output directory."""
        from ..engine import Encoder

        encoder = Encoder(str(self.output), device=str(self.device),
                          dtype=self.dtype if self.device.type != "cpu" else torch.float32)
        metrics = evaluate(encoder.encode, self.sts_test)
        append_csv(self.output / "eval", self.sts_test, -1, -1, metrics)
        log.info("STS test of the kept model: %s", format_metrics(metrics))
        return metrics

    def _rewrite_csv(self) -> None:
        """The dev CSV is the evaluation history; after a resume, drop rows the crash left behind."""
        if self.sts_dev is None:
            return
        path = self.output / "eval" / f"similarity_evaluation_{self.sts_dev.name}_results.csv"
        path.unlink(missing_ok=True)
        for row in self.history:
            append_csv(self.output / "eval", self.sts_dev, row["epoch"], row["steps"], row)

    # ----------------------------------------------------------------------------- saving

    def current_checkpoint(self) -> ckpt.Checkpoint:
        """The model as it is now (the frozen transformer from the untouched fp32 original)."""
        current = self.model.to_checkpoint(self.base)
        if self.frozen:
            current.transformer_state = self.base.transformer_state
        current.source = str(self.output)
        return current

    def save_model(self) -> None:
        staging = self.output / ".staging-model"
        shutil.rmtree(staging, ignore_errors=True)
        ckpt.save(self.current_checkpoint(), staging)
        publish(staging, self.output)

    def write_card(self, test: dict[str, float] | None = None) -> None:
        write_model_card(self.output / "README.md", self, test)

    def save_state(self) -> Path:
        """A resume checkpoint in ``output/checkpoints/step-N``, written whole or not at all."""
        folder = self.output / "checkpoints" / f"step-{self.step}"
        staging = folder.with_name(folder.name + ".tmp")
        if self.main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        distributed.barrier()
        torch.save({"batcher": self.batcher.state_dict(), "torch_random": torch.get_rng_state(),
                    "cuda_random": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                   staging / f"rank{self.rank}.pt")
        if self.main:
            trainable = {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}
            torch.save({
                "step": self.step, "trainable": trainable, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "best_score": self.best_score, "best_step": self.best_step, "best_metrics": self.best_metrics,
                "history": self.history, "fingerprint": self.fingerprint, "world_size": self.world,
                "config": self.config.to_dict(), "time": time.time(),
            }, staging / STATE_FILE)
        distributed.barrier()
        if self.main:
            with _no_interrupt():
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)
                for old in folder.parent.glob("step-*"):
                    if old != folder and old.is_dir():
                        shutil.rmtree(old, ignore_errors=True)
            log.info("resume checkpoint written: %s", folder)
        distributed.barrier()
        return folder

    def find_resume(self, where: str) -> Path:
        if where in ("auto", "latest"):
            root = self.output / "checkpoints"
        else:
            root = Path(where)
        if (root / STATE_FILE).is_file():
            return root
        candidates = sorted((p for p in root.glob("step-*") if (p / STATE_FILE).is_file() and p.suffix != ".tmp"),
                            key=lambda p: int(p.name.split("-")[1]))
        if not candidates:
            raise FileNotFoundError(f"--resume: no resume checkpoint in {root} (looked for {STATE_FILE})")
        return candidates[-1]

    def load_state(self, folder: Path) -> None:
        state_path, rank_path = folder / STATE_FILE, folder / f"rank{self.rank}.pt"
        if not rank_path.is_file():
            raise FileNotFoundError(f"--resume: {rank_path} is missing (was the run made with fewer processes?)")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(f"--resume: {folder} was trained on other data ({state['fingerprint']} triplets:hash, "
                             f"now {self.fingerprint}); use the same --data, --split and --seed")
        if state["world_size"] != self.world:
            raise ValueError(f"--resume: {folder} was made with {state['world_size']} processes, this run has {self.world}")
        for key in ("batch_size", "lr", "epochs", "max_steps", "freeze_transformer", "n_dense", "base_model"):
            if state["config"].get(key) != getattr(self.config, key):
                raise ValueError(f"--resume: {folder} was made with {key}={state['config'].get(key)!r}, "
                                 f"this run has {getattr(self.config, key)!r}")
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_score, self.best_step = state["best_score"], state["best_step"]
        self.best_metrics, self.history = state["best_metrics"], list(state["history"])
        mine = torch.load(rank_path, map_location="cpu", weights_only=True)
        self.batcher.load_state_dict(mine["batcher"])
        torch.set_rng_state(mine["torch_random"])
        if mine["cuda_random"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(mine["cuda_random"])
        log.info("resumed from %s at step %d of %d", folder, self.step, self.total_steps)


def train(config: TrainConfig, on_step: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Run the recipe (see :class:`TrainConfig`) and return where the model is and how it scores."""
    return Trainer(config, on_step=on_step).run()
