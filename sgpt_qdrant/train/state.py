"""Files a run leaves on disk, each written whole or not at all: the published model and the
resume checkpoints (``output/checkpoints/step-N/{trainer_state.pt, rank<R>.pt}``)."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import atomic

STATE_FILE = "trainer_state.pt"
#: Settings a resumed run must share with the run that wrote the checkpoint: everything that changes
#: the model, the schedule (the saved scheduler holds its position, not its warmup) or the choice of
#: the best evaluation.
MUST_MATCH = ("batch_size", "lr", "epochs", "max_steps", "freeze_transformer", "n_dense", "base_model",
              "warmup_ratio", "max_seq_length", "pooling", "scale", "max_grad_norm", "adam_eps", "weight_decay",
              "precision", "eval_steps", "sts_dev")


class ResumeError(ValueError):
    """A resume checkpoint that cannot be used; the message names the file."""


@contextlib.contextmanager
def no_interrupt():
    """Defer Ctrl-C while files are swapped into place."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def publish(staging: Path, target: Path) -> None:
    """Move every entry of ``staging`` into ``target``, replacing what is there; drop ``staging``."""
    target.mkdir(parents=True, exist_ok=True)
    with no_interrupt():
        for entry in sorted(staging.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                atomic.publish_folder(entry, target / entry.name)
            else:
                atomic.publish_file(entry, target / entry.name)
        shutil.rmtree(staging, ignore_errors=True)


def fingerprint(triplets: Sequence[Sequence[str]]) -> str:
    """Identifies the training set, so a resume cannot silently continue on other data."""
    digest = hashlib.sha1()
    for triplet in triplets:
        digest.update("\x1f".join(triplet).encode("utf-8"))
        digest.update(b"\x1e")
    return f"{len(triplets)}:{digest.hexdigest()}"


def staging_folder(output: Path, step: int) -> Path:
    return output / "checkpoints" / f"step-{step}.tmp"


def commit_checkpoint(staging: Path) -> Path:
    """Rename a fully written ``step-N.tmp`` to ``step-N`` and drop older checkpoints."""
    folder = staging.with_suffix("")
    with no_interrupt():
        atomic.publish_folder(staging, folder)
        for old in folder.parent.glob("step-*"):
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return folder


def find_checkpoint(where: str, output: Path) -> Path:
    """``where`` is a checkpoint folder, a folder of them, or ``auto``/``latest`` (in ``output``)."""
    root = output / "checkpoints" if where in ("auto", "latest") else Path(where)
    if (root / STATE_FILE).is_file():
        return root
    candidates = [p for p in root.glob("step-*") if p.suffix != ".tmp" and (p / STATE_FILE).is_file()]
    if not candidates:
        raise FileNotFoundError(f"--resume: no resume checkpoint in {root} (looked for {STATE_FILE})")
    return max(candidates, key=lambda p: int(p.name.split("-")[1]))


def _load(path: Path) -> dict[str, Any]:
    """A checkpoint file, or one line naming it (a truncated or foreign file must not be a traceback)."""
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} is missing (was the run made with fewer processes?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle refused by weights_only, EOF: all "corrupt"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ResumeError(f"--resume: {path} is not a readable checkpoint ({type(exc).__name__}: {first[:200]}); "
                          "resume from an earlier one or start again") from None
    if not isinstance(state, dict):
        raise ResumeError(f"--resume: {path} is not a checkpoint written by sgpt-train")
    return state


def read_checkpoint(folder: Path, rank: int, fingerprint: str, world: int, config: dict[str, Any]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shared state, this rank's state) of ``folder``, refused unless it fits this run."""
    shared, mine = _load(folder / STATE_FILE), _load(folder / f"rank{rank}.pt")
    missing = {"step", "trainable", "optimizer", "scheduler", "fingerprint", "world_size", "config"} - set(shared)
    if missing or {"batcher", "torch_random"} - set(mine):
        raise ResumeError(f"--resume: {folder} is not a checkpoint written by sgpt-train "
                          f"(missing {', '.join(sorted(missing)) or 'the batch state'})")
    if shared["fingerprint"] != fingerprint:
        raise ResumeError(f"--resume: {folder} was trained on other data ({shared['fingerprint']} triplets:hash, "
                          f"now {fingerprint}); use the same --data, --split and --seed")
    if shared["world_size"] != world:
        raise ResumeError(f"--resume: {folder} was made with {shared['world_size']} processes, this run has {world}")
    for key in MUST_MATCH:
        if shared["config"].get(key) != config.get(key):
            raise ResumeError(f"--resume: {folder} was made with {key}={shared['config'].get(key)!r}, "
                              f"this run has {config.get(key)!r}")
    return shared, mine
