"""Training data: NLI pairs and ready triplets from files (or the Hub), and the recipe's triplets.

The SGPT NLI run turned AllNLI pairs into (anchor, positive, negative) triplets; this module
reproduces that construction exactly, with insertion-ordered "sets" so a seed fixes the result
whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Pair = tuple[str, str, str]  # (sentence1, sentence2, label)
Triplet = tuple[str, str, str]  # (anchor, positive, negative)

LABELS = ("entailment", "neutral", "contradiction")
#: Integer labels as the Hugging Face SNLI/MultiNLI/all-nli datasets store them.
INT_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
#: Gold labels that mean "no consensus" in the released SNLI/MultiNLI files: skipped.
NO_LABEL = {"-", "", "-1"}
DEFAULT_HF = "hf:sentence-transformers/all-nli"


class DataError(ValueError):
    """Unreadable training or evaluation data; the message names the file (and line)."""


@dataclass
class TrainingData:
    pairs: list[Pair] = field(default_factory=list)
    triplets: list[Triplet] = field(default_factory=list)
    skipped: int = 0  # rows without a gold label
    sources: list[str] = field(default_factory=list)
    split_sources: list[str] = field(default_factory=list)  # sources whose rows were chosen by a split

    def extend(self, other: TrainingData) -> None:
        self.pairs += other.pairs
        self.triplets += other.triplets
        self.skipped += other.skipped
        self.sources += other.sources
        self.split_sources += other.split_sources


def open_text(path: Path) -> io.TextIOBase:
    """Text (utf-8) from a plain or ``.gz`` file."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def normalize_label(value: object, where: str) -> str | None:
    """'entailment' | 'neutral' | 'contradiction', or None for an unlabelled row."""
    if isinstance(value, bool):
        raise DataError(f"{where}: label {value!r} is not an NLI label")
    if isinstance(value, int):
        if value == -1:
            return None
        if value in INT_LABELS:
            return INT_LABELS[value]
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in NO_LABEL:
            return None
        if text in LABELS:
            return text
        if text.isdigit() and int(text) in INT_LABELS:
            return INT_LABELS[int(text)]
    elif value is None:
        return None
    raise DataError(f"{where}: label {value!r} is not one of {', '.join(LABELS)} (or 0/1/2)")


def _record(row: dict, where: str, data: TrainingData) -> None:
    """One row of any supported layout, by its field names."""
    if "anchor" in row and "positive" in row and "negative" in row:
        texts = (row["anchor"], row["positive"], row["negative"])
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError(f"{where}: anchor, positive and negative must be non-empty strings")
        data.triplets.append(texts)  # type: ignore[arg-type]
        return
    for first, second, label_key in (("sentence1", "sentence2", "gold_label"), ("sentence1", "sentence2", "label"),
                                     ("premise", "hypothesis", "label"), ("premise", "hypothesis", "gold_label")):
        if first in row and second in row and label_key in row:
            label = normalize_label(row[label_key], where)
            s1, s2 = row[first], row[second]
            if label is None or not isinstance(s1, str) or not isinstance(s2, str):
                data.skipped += 1
                return
            data.pairs.append((s1, s2, label))
            return
    raise DataError(
        f"{where}: unknown layout (fields {sorted(row)[:8]}); expected sentence1/sentence2/gold_label, "
        "premise/hypothesis/label or anchor/positive/negative"
    )


def _read_jsonl(path: Path, data: TrainingData) -> None:
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: expected a JSON object per line")
            _record(row, f"{path}:{n}", data)


def _read_tsv(path: Path, split: str | None, data: TrainingData) -> None:
    with open_text(path) as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        first = next(reader, None)
        if first is None:
            raise DataError(f"{path}: empty file")
        header = [h.strip() for h in first]
        names = set(header)
        if {"sentence1", "sentence2", "label"} <= names or {"anchor", "positive", "negative"} <= names:
            use_split = split if "split" in names else None
            if use_split is not None:
                data.split_sources.append(str(path))
            for n, fields in enumerate(reader, 2):
                if not fields:
                    continue
                if len(fields) < len(header):
                    raise DataError(f"{path}:{n}: {len(fields)} tab-separated fields, header has {len(header)}")
                row = dict(zip(header, fields))
                if use_split is not None and row["split"] != use_split:
                    continue
                _record(row, f"{path}:{n}", data)
        elif len(first) == 3:  # headerless anchor<TAB>positive<TAB>negative
            for n, fields in enumerate([first, *reader], 1):
                if not fields:
                    continue
                if len(fields) != 3:
                    raise DataError(f"{path}:{n}: expected 3 tab-separated fields (anchor, positive, negative)")
                _record(dict(zip(("anchor", "positive", "negative"), fields)), f"{path}:{n}", data)
        else:
            raise DataError(
                f"{path}: unknown layout; expected a header with split/dataset/sentence1/sentence2/label "
                "(AllNLI) or anchor/positive/negative, or 3 columns of triplets"
            )


def read_file(path: str | Path, split: str = "train") -> TrainingData:
    """Pairs and/or triplets from a .tsv/.tsv.gz (AllNLI or triplets) or .jsonl(.gz) file.

    ``split`` filters files that have a ``split`` column (AllNLI); other files are used whole.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    data = TrainingData(sources=[str(path)])
    suffixes = [s.lower() for s in path.suffixes]
    base = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes or [""])[-1]
    try:
        if base in (".jsonl", ".json"):
            _read_jsonl(path, data)
        elif base in (".tsv", ".txt", ".csv"):
            _read_tsv(path, split, data)
        else:
            raise DataError(f"{path}: unknown file type; use .tsv, .tsv.gz, .jsonl or .jsonl.gz")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if not data.pairs and not data.triplets:
        raise DataError(f"{path}: no usable rows" + (f" in split {split!r}" if split else ""))
    return data


def read_hub(spec: str, split: str = "train") -> TrainingData:
    """``hf:NAME[:CONFIG]`` through the optional ``datasets`` package (online, or its cache).

    The default ``hf:sentence-transformers/all-nli`` reads the ``pair-class`` configuration (the
    AllNLI pairs), so triplets are built by the recipe rather than taken ready-made.
    """
    name, _, config = spec[3:].partition(":")
    if name == "sentence-transformers/all-nli" and not config:
        config = "pair-class"
    try:
        import datasets
    except ImportError:
        raise DataError(f"{spec}: reading a Hugging Face dataset needs `pip install datasets`; "
                        "or pass a local AllNLI.tsv.gz / jsonl file") from None
    try:
        rows = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # offline, unknown name, missing split: one clear line
        raise DataError(f"{spec}: cannot load the Hugging Face dataset ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local file instead") from None
    data = TrainingData(sources=[spec], split_sources=[spec])
    for n, row in enumerate(rows):
        _record(row, f"{spec}[{n}]", data)
    return data


def load(sources: Sequence[str | Path], split: str = "train") -> TrainingData:
    """All ``sources`` (files or ``hf:`` specs) pooled, pairs and triplets kept apart."""
    if not sources:
        raise DataError("--data: give at least one training file (or hf:NAME)")
    data = TrainingData()
    for source in sources:
        text = str(source)
        data.extend(read_hub(text, split) if text.startswith("hf:") else read_file(text, split))
    return data


def triplets_from_pairs(pairs: Iterable[Pair], seed: int) -> list[Triplet]:
    """The recipe's triplets: for every sentence with an entailment and a contradiction partner
    (either direction), ``(s, entailment, contradiction)`` and ``(entailment, s, contradiction)``
    with partners drawn at random."""
    partners: dict[str, dict[str, dict[str, None]]] = {}

    def add(s1: str, s2: str, label: str) -> None:
        if s1 not in partners:
            partners[s1] = {"contradiction": {}, "entailment": {}, "neutral": {}}
        partners[s1][label][s2] = None

    for s1, s2, label in pairs:
        s1, s2 = s1.strip(), s2.strip()
        add(s1, s2, label)
        add(s2, s1, label)
    rng = random.Random(seed)
    triplets: list[Triplet] = []
    for sentence, others in partners.items():
        entail, contra = list(others["entailment"]), list(others["contradiction"])
        if entail and contra:
            triplets.append((sentence, rng.choice(entail), rng.choice(contra)))
            triplets.append((rng.choice(entail), sentence, rng.choice(contra)))
    return triplets


def training_triplets(data: TrainingData, seed: int) -> list[Triplet]:
    """Triplets built from the pairs (recipe) followed by the ready-made triplets."""
    return triplets_from_pairs(data.pairs, seed) + list(data.triplets)
