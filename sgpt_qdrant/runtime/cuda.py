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
import copy
import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from .execute import Batch, split_on_oom

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
    """Persistent workers, one per device, each with its own replica of ``model``.

    An executor like :class:`~.execute.Sequential`: :meth:`run` queues every batch before it
    waits on any, so packing, transfers and compute overlap.
    """

    pin = True  # pinned host memory: the copies to the GPU do not block
    streams = True  # many batches in flight: callers may tokenise ahead

    def __init__(self, model: nn.Module, devices: Sequence[torch.device],
                 on_oom: Callable[[], None] | None = None, backend: str = "eager") -> None:
        self.devices = list(devices)
        self.backend = backend
        self.warmup_seconds = 0.0
        self.pin = self.devices[0].type == "cuda"
        self.replicas = [model if i == 0 else _replicate(model, dev) for i, dev in enumerate(self.devices)]
        self._queue: queue.Queue = queue.Queue(maxsize=4 * len(self.devices) + 4)
        self._on_oom = on_oom
        self._threads = [
            threading.Thread(target=self._work, args=(dev, rep), daemon=True, name=f"sgpt-{dev}")
            for dev, rep in zip(self.devices, self.replicas)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, batches: Iterable[Batch]) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Queue every padded batch, then yield the vectors as they are done."""
        job = Job()
        for batch, input_ids, mask in batches:
            job._add()
            self._queue.put((job, batch, input_ids, mask))
        yield from job.wait()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self, device: torch.device, model: nn.Module) -> None:
        stream = None
        if device.type == "cuda":  # other device types run the same logic (tests use the CPU)
            torch.cuda.set_device(device)
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.default_stream(device))  # the replica's weights were copied there
        run = functools.partial(self._one, model, device)
        while True:
            task = self._queue.get()
            if task is None:
                return
            job, batch, input_ids, mask = task
            try:
                in_stream = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
                with in_stream, torch.inference_mode():
                    for result in split_on_oom(run, batch, input_ids, mask, self._on_oom, str(device)):
                        job._result(result)
                job._finish()
            except BaseException as exc:  # handed to the caller's thread by Job.wait
                job._finish(error=exc)

    @staticmethod
    def _one(model, device, batch, input_ids, mask) -> tuple:
        """Forward one batch: (batch, host vectors, event or None, inputs kept alive or None)."""
        ids = input_ids.to(device, non_blocking=True)
        m = mask.to(device, non_blocking=True)
        vectors = model(ids, m)
        if device.type != "cuda":
            return batch, vectors.cpu(), None, None
        host = torch.empty(vectors.shape, dtype=vectors.dtype, pin_memory=True)
        host.copy_(vectors, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        # the pinned inputs stay referenced until the copies that read them are done
        return batch, host, event, (input_ids, mask)


def token_budget(devices: Sequence[torch.device], hidden: int, inner: int, dtype: torch.dtype) -> int:
    """Padded tokens per batch that fit in a third of the smallest free memory, within 8k..128k.

    Peak activations per token are about 8 hidden-wide and 2 inner-wide vectors (residual,
    LayerNorm, q/k/v, attention output; the MLP's inner layer and its GELU); flash attention
    keeps no length² matrix. Past ~128k tokens a batch gains nothing but latency.
    """
    free = min(torch.cuda.mem_get_info(d)[0] for d in devices)
    per_token = (8 * hidden + 2 * inner) * torch.tensor([], dtype=dtype).element_size()
    return int(min(max(free // 3 // per_token, 8 * 1024), 128 * 1024))


def _replicate(model: nn.Module, device: torch.device) -> nn.Module:
    return copy.deepcopy(model).to(device)
