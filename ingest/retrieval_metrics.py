"""Ranking metrics as BEIR reports them (trec_eval definitions, as ``pytrec_eval`` computes them).

Pure functions of ``qrels`` (query id → {doc id: relevance}) and a ``run`` (query id → {doc id:
score}); no I/O, no numpy. Definitions, per query, then the mean over the judged queries:

- ranking: by score, highest first; equal scores by doc id in *reverse* string order (trec_eval's
  rule, so ties rank as pytrec_eval ranks them);
- a document is relevant when its relevance is ≥ 1; gains are the relevance values (trec_eval's
  ``ndcg_cut``, linear gains, log2 discount);
- nDCG@k = DCG@k / ideal DCG@k; MAP@k = Σ precision@rank over the relevant documents ranked in
  the top k, divided by the number of relevant documents; recall@k = relevant in the top k /
  relevant; MRR@k = 1 / rank of the first relevant document in the top k (0 if none).

A judged query with no results scores 0 (pytrec_eval leaves it out of its output; BEIR's mean
then skips it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

def ranked(scores: Mapping[str, float]) -> list[str]:
    """Doc ids best first: score descending, ties by doc id descending (as trec_eval)."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def ndcg(judged: Mapping[str, int], ranking: list[str], k: int) -> float:
    gains = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal == 0:
        return 0.0
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    return dcg / ideal


def average_precision(judged: Mapping[str, int], ranking: list[str], k: int) -> float:
    relevant = sum(1 for r in judged.values() if r > 0)
    if relevant == 0:
        return 0.0
    hits, total = 0, 0.0
    for i, d in enumerate(ranking[:k]):
        if judged.get(d, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / relevant


def recall(judged: Mapping[str, int], ranking: list[str], k: int) -> float:
    relevant = sum(1 for r in judged.values() if r > 0)
    if relevant == 0:
        return 0.0
    return sum(1 for d in ranking[:k] if judged.get(d, 0) > 0) / relevant


def reciprocal_rank(judged: Mapping[str, int], ranking: list[str], k: int) -> float:
    for i, d in enumerate(ranking[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


#: The metrics reported: (name, function, cut-off).
METRICS = (("ndcg@10", ndcg, 10), ("map@100", average_precision, 100), ("recall@100", recall, 100),
           ("mrr@10", reciprocal_rank, 10))
NAMES = tuple(name for name, _, _ in METRICS)


def per_query(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """Every metric of :data:`METRICS` for every judged query (those of ``qrels``)."""
    out = {}
    for qid, judged in qrels.items():
        ranking = ranked(run.get(qid, {}))
        out[qid] = {name: fn(judged, ranking, k) for name, fn, k in METRICS}
    return out


def evaluate(qrels: Qrels, run: Run) -> dict[str, float]:
    """The mean of each metric over the judged queries."""
    scores = per_query(qrels, run)
    if not scores:
        return {name: 0.0 for name in NAMES}
    return {name: sum(s[name] for s in scores.values()) / len(scores) for name in NAMES}
