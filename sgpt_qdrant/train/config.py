"""The settings of one training run, checked when they are made (before any data or model load)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BASE = "EleutherAI/gpt-neo-125M"


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
    # Train exactly this many steps, over as many epochs as that takes (it replaces ``epochs``, as in
    # Hugging Face's Trainer); the schedule spans them. 0 writes the untrained model.
    max_steps: int | None = None
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

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be at least 1")
        for name in ("max_steps", "eval_steps", "save_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be 0 or more")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"--warmup-ratio: {self.warmup_ratio} must be in 0..1")
        if not self.data:
            raise ValueError("--data: give at least one training file")

    def refuse_at_once(self) -> None:
        """The refusals that need no torch, no model and no data read: run before importing them.

        An ``--output`` that already holds a model or run (without ``--overwrite`` / ``--resume``),
        and a data or STS file that does not exist, each as one line naming the argument."""
        output = Path(self.output)
        if not self.resume and not self.overwrite and output.is_dir() and any(
                (output / name).exists() for name in ("modules.json", "checkpoints", "eval")):
            raise FileExistsError(f"--output: {output} already holds a model or run; pass --overwrite to "
                                  "replace it or --resume to continue it")
        for flag, path in [("--sts-dev", self.sts_dev), ("--sts-test", self.sts_test)]:
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{flag}: {path}: no such STS file")
        for path in self.data:
            if not path.startswith("hf:") and not Path(path).is_file():
                raise FileNotFoundError(f"--data: {path}: no such data file")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
