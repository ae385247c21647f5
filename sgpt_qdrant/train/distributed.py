"""The few torch.distributed pieces the trainer needs; all are no-ops in a single process.

Launch with ``torchrun --nproc_per_node N -m sgpt_qdrant.train.cli ...`` (or the ``sgpt-train``
script): every rank draws its own batches, positives/negatives are gathered across ranks for the
loss, gradients are averaged before clipping (what DDP does), and rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def is_enabled() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_enabled() else 1


def rank() -> int:
    return dist.get_rank() if is_enabled() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device | None) -> torch.device | None:
    """Join the process group torchrun describes; on CUDA each rank takes ``cuda:LOCAL_RANK``."""
    if not launched_by_torchrun() or is_enabled():
        return device
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return device


def shutdown() -> None:
    if is_enabled():
        dist.destroy_process_group()


def barrier() -> None:
    if is_enabled():
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on every slice
        size = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * size : (dist.get_rank() + 1) * size]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``tensor`` (same shape on every rank) from all ranks. The backward sums
    all ranks' gradients for each slice and hands it to the rank that owns it, as the SGPT fork's
    ``all_gather_with_grad`` did, so the averaged gradient is that of one big batch."""
    return _AllGatherWithGrad.apply(tensor)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Mean of the gradients over ranks, in one flat all-reduce."""
    if world_size() < 2:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size()
    for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)
