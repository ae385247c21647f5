"""Many batches on one or more GPUs: one model copy and one worker thread per GPU, kept for the
life of the encoder.

The caller's thread packs batches into pinned host memory and puts them on one shared queue;
each worker takes the next batch (so faster or emptier GPUs take more), copies it in on its own
CUDA stream without blocking, runs the model, and copies the vectors back into pinned memory,
recording an event. Nothing waits on the GPU until :meth:`Job.wait`, so packing the next batch,
the transfers and the compute overlap; there is one synchronisation per batch at the very end.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


class Job:
    """The batches of one ``encode`` call, collected as the workers finish them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._done = threading.Event()
        self.results: list[tuple] = []  # (batch, host vectors, event, inputs kept alive)
        self.error: BaseException | None = None

    def _add(self) -> None:
        with self._lock:
            self._pending += 1

    def _result(self, result: tuple) -> None:
        with self._lock:
            self.results.append(result)

    def _finish(self, error: BaseException | None = None) -> None:
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            self._pending -= 1
            if self._closed and self._pending == 0:
                self._done.set()

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pending == 0:
                self._done.set()

    def wait(self) -> list[tuple[list[int], torch.Tensor]]:
        """Block until every batch is done; vectors on the host, in completion order."""
        self._close()
        self._done.wait()
        if self.error is not None:
            raise self.error
        out = []
        for batch, host, event, _inputs in self.results:
            if event is not None:
                event.synchronize()
            out.append((batch, host))
        self.results = []
        return out


class DevicePool:
    """Persistent workers, one per device, each with its own replica of ``model``."""

    def __init__(self, model: nn.Module, devices: Sequence[torch.device],
                 on_oom: Callable[[], None] | None = None) -> None:
        self.devices = list(devices)
        self.replicas = [model if i == 0 else _replicate(model, dev) for i, dev in enumerate(self.devices)]
        self._queue: queue.Queue = queue.Queue(maxsize=4 * len(self.devices) + 4)
        self._on_oom = on_oom
        self._threads = [
            threading.Thread(target=self._work, args=(dev, rep), daemon=True, name=f"sgpt-{dev}")
            for dev, rep in zip(self.devices, self.replicas)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job, batch: list[int], input_ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Queue one padded batch (host tensors, pinned for asynchronous copies)."""
        job._add()
        self._queue.put((job, batch, input_ids, mask))

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self, device: torch.device, model: nn.Module) -> None:
        stream = None
        if device.type == "cuda":  # other device types run the same logic (tests use the CPU)
            torch.cuda.set_device(device)
            stream = torch.cuda.Stream(device)
        while True:
            task = self._queue.get()
            if task is None:
                return
            job, batch, input_ids, mask = task
            try:
                in_stream = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
                with in_stream, torch.inference_mode():
                    for result in self._run(model, device, batch, input_ids, mask):
                        job._result(result)
                job._finish()
            except BaseException as exc:  # handed to the caller's thread by Job.wait
                job._finish(error=exc)

    def _run(self, model, device, batch, input_ids, mask):
        """Forward one batch; on out-of-memory split it in two and go on."""
        try:
            ids = input_ids.to(device, non_blocking=True)
            m = mask.to(device, non_blocking=True)
            vectors = model(ids, m)
            if device.type != "cuda":
                yield batch, vectors.cpu(), None, None
                return
            host = torch.empty(vectors.shape, dtype=vectors.dtype, pin_memory=True)
            host.copy_(vectors, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            # the pinned inputs stay referenced until the copies that read them are done
            yield batch, host, event, (input_ids, mask)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if self._on_oom is not None:
                self._on_oom()
            half = len(batch) // 2
            log.warning("out of memory on %s with a batch of %d; splitting", device, len(batch))
            yield from self._run(model, device, batch[:half], input_ids[:half], mask[:half])
            yield from self._run(model, device, batch[half:], input_ids[half:], mask[half:])


def _replicate(model: nn.Module, device: torch.device) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(device)


