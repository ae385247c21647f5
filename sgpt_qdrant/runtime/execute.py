"""Running padded batches: the out-of-memory split, and the sequential executor for one device.

An executor takes ``(indices, input_ids, mask)`` host tensors and yields ``(indices, vectors)``
on the host. :class:`Sequential` runs them one after another on one device (the CPU, MPS, or
a single forward a caller wants); :class:`~.cuda.DevicePool` keeps one worker per GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import torch

log = logging.getLogger(__name__)

Batch = tuple[list[int], torch.Tensor, torch.Tensor]


def split_on_oom(run: Callable[[list[int], torch.Tensor, torch.Tensor], tuple], batch: list[int],
                 input_ids: torch.Tensor, mask: torch.Tensor,
                 on_oom: Callable[[], None] | None = None, where: str = "") -> Iterator[tuple]:
    """``run`` one padded batch; on out-of-memory halve it and go on (a single text re-raises).

    Halving the padded tensors is exact: right padding never changes a row's vector.
    """
    try:
        result = run(batch, input_ids, mask)
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
        result = None  # the halves run after the except block: its traceback holds the failed activations
    if result is not None:
        yield result
        return
    if input_ids.device.type == "cuda" or where.startswith("cuda"):
        torch.cuda.empty_cache()
    if on_oom is not None:
        on_oom()
    half = len(batch) // 2
    log.warning("out of memory%s on a batch of %d; splitting", f" on {where}" if where else "", len(batch))
    yield from split_on_oom(run, batch[:half], input_ids[:half], mask[:half], on_oom, where)
    yield from split_on_oom(run, batch[half:], input_ids[half:], mask[half:], on_oom, where)


class Sequential:
    """One batch after another through ``forward`` on ``device``."""

    pin = False  # host tensors are used where they are (CPU) or copied synchronously
    streams = False  # nothing runs ahead of the caller

    def __init__(self, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
                 backend: str, on_oom: Callable[[], None] | None = None) -> None:
        self.forward = forward
        self.device = device
        self.backend = backend
        self.warmup_seconds = 0.0
        self.on_oom = on_oom

    def _one(self, batch: list[int], input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        if self.device.type != "cpu":
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            return batch, self.forward(input_ids, mask).cpu()

    def run(self, batches: Iterable[Batch]) -> Iterator[tuple[list[int], torch.Tensor]]:
        for batch, input_ids, mask in batches:
            yield from split_on_oom(self._one, batch, input_ids, mask, self.on_oom)

    def close(self) -> None:
        pass
