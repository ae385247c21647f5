"""The recipe's NoDuplicates batching, with a state that a resumed run picks up exactly.

In-batch negatives are only negatives if no text repeats inside the batch, so each batch is
filled in shuffled order with examples none of whose texts (``strip().lower()``) is already in
it; skipped examples are not deferred. At the end of the data the order is reshuffled and
filling wraps around. An epoch is ``floor(N / batch_size)`` batches.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


class NoDuplicatesBatcher:
    def __init__(self, examples: Sequence[Sequence[str]], batch_size: int, seed: int | str) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size} must be at least 1")
        if len(examples) < batch_size:
            raise ValueError(f"{len(examples)} training examples cannot fill one batch of {batch_size}")
        self.examples = examples
        self.batch_size = batch_size
        self.rng = random.Random(seed)
        self.order = list(range(len(examples)))
        self.rng.shuffle(self.order)
        self.pointer = 0

    def __len__(self) -> int:
        return len(self.examples) // self.batch_size

    def next_batch(self) -> list[Sequence[str]]:
        return [self.examples[i] for i in self.next_indices()]

    def next_indices(self) -> list[int]:
        """The next batch as indices into ``examples``."""
        batch: list[int] = []
        seen: set[str] = set()
        scanned = 0
        while len(batch) < self.batch_size:
            index = self.order[self.pointer]
            keys = [text.strip().lower() for text in self.examples[index]]
            if not any(key in seen for key in keys):
                batch.append(index)
                seen.update(keys)
            self.pointer += 1
            scanned += 1
            if self.pointer >= len(self.order):
                self.pointer = 0
                self.rng.shuffle(self.order)
            if scanned > 2 * len(self.order) + self.batch_size:
                raise ValueError(
                    f"cannot fill a batch of {self.batch_size} without repeating a text: the data has too "
                    "few distinct texts; use a smaller --batch-size"
                )
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "pointer": self.pointer, "rng": self.rng.getstate(),
                "n": len(self.examples), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["n"] != len(self.examples) or state["batch_size"] != self.batch_size:
            raise ValueError(
                f"resume: the checkpoint was made with {state['n']} examples in batches of {state['batch_size']}, "
                f"this run has {len(self.examples)} in batches of {self.batch_size}; use the same data and settings"
            )
        self.order = list(state["order"])
        self.pointer = int(state["pointer"])
        self.rng.setstate(_as_rng_state(state["rng"]))


def _as_rng_state(state: Any) -> tuple:
    """random.Random state survives a torch.save/load round trip as lists; make it tuples again."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
