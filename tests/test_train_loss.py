"""The training loss equals sentence-transformers' MultipleNegativesRankingLoss and a hand
computation; gathered across two gloo processes it gives the gradient of one big batch."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from sgpt_qdrant.train.loss import mnrl


def _st_mnrl(embeddings):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model=None, scale=20.0).compute_loss_from_embeddings(embeddings, None)


@pytest.mark.parametrize("with_negatives", [True, False])
def test_equals_sentence_transformers(with_negatives):
    g = torch.Generator().manual_seed(3)
    a, p, n = (torch.randn(16, 24, generator=g) for _ in range(3))
    ours = mnrl(a, p, n if with_negatives else None, scale=20.0)
    ref = _st_mnrl([a, p, n] if with_negatives else [a, p])
    assert abs(ours.item() - ref.item()) < 1e-6


def test_equals_hand_computation():
    a = [[1.0, 0.0], [0.0, 2.0]]
    p = [[1.0, 1.0], [0.0, 1.0]]
    n = [[-1.0, 0.0], [3.0, 4.0]]

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v)) / math.hypot(*u) / math.hypot(*v)

    total = 0.0
    for i, anchor in enumerate(a):
        logits = [20 * cos(anchor, c) for c in p + n]  # all positives, then all hard negatives
        total += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    ours = mnrl(torch.tensor(a), torch.tensor(p), torch.tensor(n), scale=20.0)
    assert abs(ours.item() - total / 2) < 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs():
    g = torch.Generator().manual_seed(11)
    weight = torch.randn(6, 5, generator=g)
    xs = [torch.randn(2, 4, 5, generator=g) for _ in range(3)]  # (rank, batch, features) for a, p, n
    return weight, xs


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from sgpt_qdrant.train import distributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        weight, xs = _inputs()
        layer = torch.nn.Linear(5, 6, bias=False)
        with torch.no_grad():
            layer.weight.copy_(weight)
        a, p, n = (layer(x[rank]) for x in xs)
        loss = mnrl(a, p, n, scale=20.0)
        loss.backward()
        distributed.average_gradients(layer.parameters())
        torch.save({"loss": loss.detach(), "grad": layer.weight.grad}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_across_two_processes_equals_one_big_batch(tmp_path):
    """Two gloo ranks of 4 anchors each: the mean loss and the averaged gradient equal a single
    process scoring all 8 anchors against all 8 positives and 8 hard negatives."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    weight, xs = _inputs()
    w = weight.clone().requires_grad_(True)
    a, p, n = (torch.cat([x[0], x[1]]) @ w.T for x in xs)
    scores = 20 * F.normalize(a, dim=1) @ F.normalize(torch.cat([p, n]), dim=1).T
    ref = F.cross_entropy(scores, torch.arange(8))
    ref.backward()
    assert sum(r["loss"].item() for r in results) / 2 == pytest.approx(ref.item(), rel=1e-6)
    for r in results:
        torch.testing.assert_close(r["grad"], w.grad, atol=1e-6, rtol=0)
