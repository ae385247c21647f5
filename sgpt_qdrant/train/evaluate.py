"""STS Benchmark evaluation as sentence-transformers' EmbeddingSimilarityEvaluator did it in 2022.

Pearson and Spearman correlation of the gold scores (/ 5) with cosine similarity, negative
euclidean and manhattan distance and dot product of the two sentences' embeddings. The score a
run keeps its best checkpoint by is the largest of the four Spearman values.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, open_text

CSV_COLUMNS = [
    "epoch", "steps",
    "cosine_pearson", "cosine_spearman", "euclidean_pearson", "euclidean_spearman",
    "manhattan_pearson", "manhattan_spearman", "dot_pearson", "dot_spearman",
]
METRICS = CSV_COLUMNS[2:]


@dataclass
class StsSet:
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray  # gold similarity / 5, in [0, 1]
    name: str  # "sts-dev", "sts-test": used in the CSV file name

    def __len__(self) -> int:
        return len(self.scores)


def read_sts(path: str | os.PathLike[str], split: str = "dev", name: str | None = None) -> StsSet:
    """The original ``sts-{train,dev,test}.csv`` (tab-separated, unquoted; score in field 5,
    sentences in fields 6 and 7; extra fields ignored) or the ``stsbenchmark.tsv.gz`` layout
    (header ``split genre dataset year sid score sentence1 sentence2``, rows of ``split``).

    ``name`` (for the CSV file name) defaults to ``sts-<split>``, or the ``sts-*`` file's own stem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such STS file")
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    try:
        with open_text(path) as f:
            lines = f.read().split("\n")
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    header = lines[0].rstrip("\r").split("\t") if lines else []
    if {"split", "score", "sentence1", "sentence2"} <= set(header):
        col = {name: i for i, name in enumerate(header)}
        for n, line in enumerate(lines[1:], 2):
            fields = line.rstrip("\r").split("\t")
            if fields == [""]:
                continue
            if len(fields) < len(header):
                raise DataError(f"{path}:{n}: {len(fields)} tab-separated fields, header has {len(header)}")
            if fields[col["split"]] != split:
                continue
            scores.append(_score(fields[col["score"]], path, n))
            s1.append(fields[col["sentence1"]])
            s2.append(fields[col["sentence2"]])
        default_name = f"sts-{split}"
    else:
        for n, line in enumerate(lines, 1):
            fields = line.rstrip("\r").split("\t")
            if fields == [""]:
                continue
            if len(fields) < 7:
                raise DataError(f"{path}:{n}: {len(fields)} tab-separated fields; the STS-B layout has at least 7")
            scores.append(_score(fields[4], path, n))
            s1.append(fields[5])
            s2.append(fields[6])
        stem = path.name.split(".")[0]
        default_name = stem if stem.startswith("sts-") else f"sts-{split}"
    if len(scores) < 2:
        raise DataError(f"{path}: fewer than 2 scored pairs" + (f" in split {split!r}" if split else ""))
    return StsSet(s1, s2, np.asarray(scores, dtype=np.float64) / 5.0, name or default_name)


def _score(text: str, path: Path, n: int) -> float:
    """A gold score in 0..5; one NaN would make every correlation NaN, so it is refused too."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}:{n}: score {text!r} is not a number") from None
    if not 0.0 <= value <= 5.0:  # also false for NaN
        raise DataError(f"{path}:{n}: score {text!r} is not a number in 0..5")
    return value


def similarity_metrics(emb1: np.ndarray, emb2: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """The eight correlations, keyed by the CSV column names."""
    from scipy.stats import pearsonr, spearmanr

    a, b = np.asarray(emb1, dtype=np.float64), np.asarray(emb2, dtype=np.float64)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarities = {
        "cosine": np.sum(unit(a) * unit(b), axis=1),
        "euclidean": -np.linalg.norm(a - b, axis=1),
        "manhattan": -np.sum(np.abs(a - b), axis=1),
        "dot": np.sum(a * b, axis=1),
    }
    out: dict[str, float] = {}
    for name, sim in similarities.items():
        constant = np.ptp(sim) == 0
        out[f"{name}_pearson"] = float("nan") if constant else float(pearsonr(gold, sim)[0])
        out[f"{name}_spearman"] = float("nan") if constant else float(spearmanr(gold, sim)[0])
    return out


def main_score(metrics: dict[str, float]) -> float:
    """The recipe's model-selection score: the best of the four Spearman correlations."""
    values = [metrics[f"{name}_spearman"] for name in ("cosine", "euclidean", "manhattan", "dot")]
    values = [v for v in values if v == v]
    return max(values) if values else float("-inf")


def evaluate(embed: Callable[[Sequence[str]], np.ndarray], sts: StsSet) -> dict[str, float]:
    """Embed every distinct sentence once and score the pairs."""
    texts = list(dict.fromkeys(sts.sentences1 + sts.sentences2))
    vectors = embed(texts)
    index = {t: i for i, t in enumerate(texts)}
    e1 = vectors[[index[t] for t in sts.sentences1]]
    e2 = vectors[[index[t] for t in sts.sentences2]]
    return similarity_metrics(e1, e2, sts.scores)


def append_csv(folder: str | os.PathLike[str], sts: StsSet, epoch: int, steps: int,
               metrics: dict[str, float]) -> Path:
    """One row of ``eval/similarity_evaluation_<name>_results.csv`` (header on first write)."""
    path = Path(folder) / f"similarity_evaluation_{sts.name}_results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with open(path, "a", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CSV_COLUMNS)
        writer.writerow([epoch, steps, *(metrics[m] for m in METRICS)])
    return path


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{m.replace('_', ' ')} {metrics[m]:.4f}" for m in METRICS if m.endswith("spearman"))
