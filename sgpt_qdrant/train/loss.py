"""MultipleNegativesRankingLoss as the recipe used it (scale 20, cosine, hard negatives).

Each anchor is scored against every positive and every hard negative of the batch; the target
is its own positive. Under ``torch.distributed`` the positives and negatives of all ranks are
gathered *with* gradient (as the SGPT fork's ``all_gather_with_grad`` did), so each anchor sees
``2 × batch × world`` candidates and the summed gradient equals that of one big batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import distributed


def cos_sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All-pairs cosine similarity, ``(len(a), len(b))``."""
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T


def mnrl(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    scale: float = 20.0,
    gather: bool = True,
) -> torch.Tensor:
    """Mean cross-entropy of ``scale * cos(anchor_i, candidates)`` with target ``positive_i``.

    Candidates are ordered ``[positives of all ranks, negatives of all ranks]``. Scores are
    computed in float32 whatever the embeddings' dtype.
    """
    columns = [positives.float()] + ([] if negatives is None else [negatives.float()])
    offset = 0
    if gather and distributed.world_size() > 1:
        columns = [distributed.all_gather_with_grad(c) for c in columns]
        offset = distributed.rank() * anchors.shape[0]
    scores = cos_sim(anchors.float(), torch.cat(columns)) * scale
    labels = torch.arange(anchors.shape[0], device=scores.device) + offset
    return F.cross_entropy(scores, labels)
