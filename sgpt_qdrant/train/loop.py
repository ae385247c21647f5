"""The training loop of the SGPT NLI recipe: frozen GPT-Neo, Dense layers trained with MNRL.

The frozen transformer runs once per text under ``inference_mode`` (bf16/fp16 on GPUs); its
hidden states are cloned out of inference mode and only the Dense head runs with autograd, so
neither gradients nor optimizer state exist for frozen weights. Evaluation, best-model
selection, the output layout and the schedule follow sentence-transformers' 2022 ``fit`` as the
recipe used it; ``max_steps`` replaces the epoch count, as in Hugging Face's Trainer.

Reading order: :class:`Trainer` builds the run (model, data, optimizer), :meth:`Trainer.run`
loops over steps, evaluating and saving as it goes; resume files live in :mod:`.state`.
"""

from __future__ import annotations

import logging
import math
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

from .. import atomic
from .. import checkpoint as ckpt
from .. import precision, tokens
from ..devices import pick_device
from ..progress import Progress
from ..model import SGPTModel
from . import distributed, state
from .base import start_checkpoint
from .batching import NoDuplicatesBatcher
from .card import RunFacts, write_model_card
from .config import TrainConfig
from .data import Triplet, load, training_triplets
from .evaluate import append_csv, evaluate, format_metrics, main_score, read_sts
from .loss import mnrl

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output: Path
    steps: int
    total_steps: int
    best_score: float | None = None
    best_step: tuple[int, int] | None = None  # (epoch, steps) of the kept model, as in the CSV
    dev: dict[str, float] | None = None  # metrics of the kept model
    test: dict[str, float] | None = None
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


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


class Trainer:
    """One training run; :meth:`run` does everything, the pieces are public for tests."""

    def __init__(self, config: TrainConfig, on_step: Callable[[Trainer], None] | None = None) -> None:
        self.config = config
        self.on_step = on_step
        self.output = Path(config.output)
        self._join_processes()
        # Cheap checks first: a typo in an evaluation file or --output should not cost a data load.
        self.sts_dev = read_sts(config.sts_dev, "dev", name="sts-dev") if config.sts_dev else None
        self.sts_test = read_sts(config.sts_test, "test", name="sts-test") if config.sts_test else None
        self._refuse_existing_output()
        self._build_model()
        self._build_data()
        self._build_optimizer()
        self.step = 0
        self.best_score: float | None = None
        self.best_step: tuple[int, int] | None = None
        self.best_metrics: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []  # evaluations, as the CSV has them (+ global_step)
        self.log: list[tuple[int, float, float]] = []  # (step, loss, lr) of every step this process ran
        self.stop = _StopFlag()
        if config.resume:
            self.load_state(state.find_checkpoint(config.resume, self.output))

    # ----------------------------------------------------------------------------- set-up

    def _join_processes(self) -> None:
        device = pick_device(self.config.device) if self.config.device else None
        self.device = distributed.init_from_env(device) or pick_device(None)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        self.dtype = precision.pick_training(self.device, self.config.precision)
        self.amp = self.dtype != torch.float32

    def _refuse_existing_output(self) -> None:
        cfg = self.config
        if not cfg.resume and not cfg.overwrite and self.output.is_dir() and any(
                (self.output / name).exists() for name in ("modules.json", "checkpoints", "eval")):
            raise FileExistsError(f"--output: {self.output} already holds a model or run; pass --overwrite to "
                                  "replace it or --resume to continue it")

    def _build_model(self) -> None:
        cfg = self.config
        self.frozen = cfg.freeze_transformer
        torch.manual_seed(cfg.seed)
        self.base = start_checkpoint(cfg.base_model, cfg.n_dense, cfg.max_seq_length, cfg.pooling, cfg.seed)
        self.tokenizer = self.base.tokenizer
        self.max_length = self.base.max_seq_length
        self.model = SGPTModel(self.base).to(self.device)
        self.model.transformer.requires_grad_(not self.frozen)
        if self.frozen and self.amp:  # frozen weights are only read: keep them in the low precision
            self.model.transformer.to(self.dtype)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("nothing to train: the transformer is frozen and there are no Dense layers")

    def _build_data(self) -> None:
        cfg = self.config
        self.data = load(cfg.data, cfg.split)
        self.triplets = training_triplets(self.data, cfg.seed)
        self.fingerprint = state.fingerprint(self.triplets)
        self.batcher = NoDuplicatesBatcher(self.triplets, cfg.batch_size, seed=f"{cfg.seed}-batches-{self.rank}")
        self.steps_per_epoch = len(self.batcher)
        self.total_steps = self.steps_per_epoch * cfg.epochs if cfg.max_steps is None else cfg.max_steps
        self.warmup_steps = math.ceil(self.total_steps * cfg.warmup_ratio)
        epoch_len = min(self.steps_per_epoch, self.total_steps) if self.total_steps else self.steps_per_epoch
        self.eval_steps = int(epoch_len * 0.1) if cfg.eval_steps is None else cfg.eval_steps
        self.save_steps = self.eval_steps if cfg.save_steps is None else cfg.save_steps

    def _build_optimizer(self) -> None:
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        self.groups = parameter_groups(self.model, cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(
            [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in self.groups if g["params"]],
            lr=cfg.lr, eps=cfg.adam_eps,
        )
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, self.warmup_steps, max(self.total_steps, 1))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    # ----------------------------------------------------------------------------- forward

    def _autocast(self, enabled: bool = True):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.amp and enabled)

    def embed_for_training(self, texts: Sequence[str]) -> torch.Tensor:
        input_ids, mask = tokens.tokenize_and_pad(self.tokenizer, texts, self.max_length, self.base.pad_id)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
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
        ids = tokens.tokenize(self.tokenizer, texts, self.max_length).ids
        out = np.zeros((len(texts), self.base.dimension), dtype=np.float32)
        unlimited = len(ids) * self.max_length  # batches of eval_batch_size texts, longest first
        for batch, input_ids, mask in tokens.padded_batches(ids, self.base.pad_id, unlimited,
                                                            self.config.eval_batch_size):
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            with self._autocast(enabled=not self.frozen):
                hidden = self.model.transformer(input_ids)
            out[batch] = self.model.head(hidden.float(), mask).float().cpu().numpy()
        return out

    # ----------------------------------------------------------------------------- training

    def run(self) -> TrainResult:
        """Train, evaluate, keep the best model in the output directory, then test it."""
        self._start_output()
        progress = Progress(self.total_steps, "step", "training", enabled=self.main and self.config.progress,
                            initial=self.step, logger=log)
        interrupted = False
        try:
            with self.stop:
                if self.total_steps == 0 and self.step == 0:
                    self._evaluate(0, -1)  # the untrained model
                while self.step < self.total_steps:
                    loss = self.train_step(self.batcher.next_batch())
                    self.step += 1
                    progress.update(loss=f"{loss:.4f}", lr=f"{self.log[-1][2]:.3g}")
                    self._evaluate_if_due()
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
            progress.close()
        result = TrainResult(self.output, self.step, self.total_steps, self.best_score, self.best_step,
                             self.best_metrics, None, interrupted, list(self.history))
        if not interrupted:
            result.test = self._finish()
        distributed.barrier()
        return result

    def _start_output(self) -> None:
        if not self.main:
            return
        cfg = self.config
        self.output.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:  # a fresh run: nothing of an earlier one may be resumed or reported
            shutil.rmtree(self.output / "eval", ignore_errors=True)
            shutil.rmtree(self.output / "checkpoints", ignore_errors=True)
        self._rewrite_csv()
        if self.sts_dev is None:
            evaluation = "no evaluation (the final model is kept)"
        elif self.eval_steps:
            evaluation = f"STS dev every {self.eval_steps} steps and at each epoch's end"
        else:
            evaluation = "STS dev at each epoch's end"
        log.info("%d training triplets (%d pairs, %d ready-made) → %d steps (%.2f epochs of %d) of %d × %d "
                 "process(es); warmup %d; %s", len(self.triplets), len(self.data.pairs), len(self.data.triplets),
                 self.total_steps, self.total_steps / self.steps_per_epoch, self.steps_per_epoch, cfg.batch_size,
                 self.world, self.warmup_steps, evaluation)

    def train_step(self, batch: Sequence[Triplet]) -> float:
        anchors, positives, negatives = (list(col) for col in zip(*batch))
        loss = mnrl(self.embed_for_training(anchors), self.embed_for_training(positives),
                    self.embed_for_training(negatives), scale=self.config.scale)
        lr = self.scheduler.get_last_lr()[0]
        self.scaler.scale(loss).backward()  # a disabled scaler (all but fp16) passes everything through
        distributed.average_gradients(self.params)
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        scale_before = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.get_scale() >= scale_before:  # a lowered scale means fp16 overflow: step skipped
            self.scheduler.step()
        value = float(loss.detach())
        self.log.append((self.step + 1, value, lr))
        return value

    def _evaluate_if_due(self) -> None:
        """Every ``eval_steps`` steps of an epoch, then at the epoch's (and the run's) end, as in
        sentence-transformers' 2022 ``fit``; the CSV marks end evaluations with ``steps = -1``."""
        epoch, in_epoch = divmod(self.step - 1, self.steps_per_epoch)
        in_epoch += 1
        if self.eval_steps and in_epoch % self.eval_steps == 0:
            self._evaluate(epoch, in_epoch)
        if in_epoch == self.steps_per_epoch or self.step == self.total_steps:
            self._evaluate(epoch, -1)

    def _should_stop(self) -> bool:
        flag = self.stop.requested
        if distributed.world_size() > 1:  # all ranks must stop at the same step
            t = torch.tensor([int(flag)], device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _finish(self) -> dict[str, float] | None:
        """After the last step: the final model if nothing chose one, the test score, the card."""
        if not self.main:
            return None
        if self.sts_dev is None:
            self.save_model()
        test = self.test() if self.sts_test is not None else None
        self.write_card(test)
        if not self.config.keep_checkpoints:
            shutil.rmtree(self.output / "checkpoints", ignore_errors=True)
        return test

    # ----------------------------------------------------------------------------- evaluation

    def _evaluate(self, epoch: int, steps: int) -> None:
        if self.sts_dev is None:
            return
        if self.main:
            metrics = evaluate(self.embed, self.sts_dev)
            self.history.append({"epoch": epoch, "steps": steps, "global_step": self.step, **metrics})
            append_csv(self.output / "eval", self.sts_dev, epoch, steps, metrics)
            score = main_score(metrics)
            improved = self.best_score is None or score > self.best_score
            log.info("STS dev %s: %s%s", self._where(steps), format_metrics(metrics),
                     "  (best so far: saved)" if improved else "")
            if improved:
                self.best_score, self.best_step, self.best_metrics = score, (epoch, steps), metrics
                self.save_model()
        distributed.barrier()

    def _where(self, steps: int) -> str:
        """A human label for an evaluation: the CSV's ``-1`` (end of epoch or run) spelled out."""
        if self.step == 0:
            return "of the untrained model"
        epoch = math.ceil(self.step / self.steps_per_epoch)
        if steps != -1:
            return f"at step {self.step}/{self.total_steps} (epoch {epoch})"
        end = "end of training" if self.step == self.total_steps else f"end of epoch {epoch}"
        return f"at step {self.step}/{self.total_steps} ({end})"

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
        with atomic.staging_folder(self.output, ".staging-model") as staging:
            ckpt.save(self.current_checkpoint(), staging)
            state.publish(staging, self.output)

    def facts(self, test: dict[str, float] | None = None) -> RunFacts:
        """What the model card reports about this run."""
        kept = self._kept_label() if self.best_step is not None else None
        return RunFacts(
            sources=list(self.data.sources), split_sources=list(self.data.split_sources),
            pairs=len(self.data.pairs), ready_triplets=len(self.data.triplets), triplets=len(self.triplets),
            trainable=sum(p.numel() for p in self.params), n_dense=len(self.model.dense),
            hidden=int(self.base.config.hidden_size), dimension=self.base.dimension, pooling=self.base.pooling,
            max_length=self.max_length, world=self.world, steps=self.step, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch, warmup_steps=self.warmup_steps, eval_steps=self.eval_steps,
            precision=precision.name_of(self.dtype), has_dev=self.sts_dev is not None,
            kept=kept, dev=self.best_metrics, test=test,
        )

    def _kept_label(self) -> str:
        row = next((r for r in self.history if r["steps"] == self.best_step[1] and r["epoch"] == self.best_step[0]),
                   None)
        step = row.get("global_step") if row is not None else None
        if step is None:
            return f"epoch {self.best_step[0]}, steps {self.best_step[1]}"
        return "the untrained model" if step == 0 else f"step {step} of {self.total_steps}"

    def write_card(self, test: dict[str, float] | None = None) -> None:
        write_model_card(self.output / "README.md", self.config, self.facts(test))

    def save_state(self) -> Path:
        """A resume checkpoint in ``output/checkpoints/step-N``, written whole or not at all."""
        staging = state.staging_folder(self.output, self.step)
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
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "best_score": self.best_score, "best_step": self.best_step, "best_metrics": self.best_metrics,
                "history": self.history, "fingerprint": self.fingerprint, "world_size": self.world,
                "config": self.config.to_dict(), "time": time.time(),
            }, staging / state.STATE_FILE)
        distributed.barrier()
        folder = staging.with_suffix("")
        if self.main:
            folder = state.commit_checkpoint(staging)
            log.info("resume checkpoint written: %s", folder)
        distributed.barrier()
        return folder

    def load_state(self, folder: Path) -> None:
        shared, mine = state.read_checkpoint(folder, self.rank, self.fingerprint, self.world, self.config.to_dict())
        params = dict(self.model.named_parameters())
        try:
            with torch.no_grad():
                for name, value in shared["trainable"].items():
                    params[name].copy_(value)
            self.optimizer.load_state_dict(shared["optimizer"])
            self.scheduler.load_state_dict(shared["scheduler"])
            if self.scaler.is_enabled() and shared.get("scaler") is not None:
                self.scaler.load_state_dict(shared["scaler"])
            self.batcher.load_state_dict(mine["batcher"])
            torch.set_rng_state(mine["torch_random"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise state.ResumeError(f"--resume: {folder} does not fit this model or data ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
        if mine.get("cuda_random") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(mine["cuda_random"])
        self.step = int(shared["step"])
        self.best_score, self.best_step = shared["best_score"], shared["best_step"]
        self.best_metrics, self.history = shared["best_metrics"], list(shared["history"])
        log.info("resumed from %s at step %d of %d", folder, self.step, self.total_steps)


def train(config: TrainConfig, on_step: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Run the recipe (see :class:`TrainConfig`) and return where the model is and how it scores."""
    return Trainer(config, on_step=on_step).run()
