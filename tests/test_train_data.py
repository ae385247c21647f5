"""Training data for sgpt-train: file readers, the recipe's triplets, NoDuplicates batching.

Expected values are derived by hand from small tables written here."""

from __future__ import annotations

import gzip
import json
import sys

import pytest

from sgpt_qdrant.train.batching import NoDuplicatesBatcher
from sgpt_qdrant.train.data import DataError, load, read_file, read_hub, triplets_from_pairs

# ---------------------------------------------------------------------------- triplets

NLI_TABLE = [
    ("A man plays guitar.", "A person plays music.", "entailment"),
    ("A man plays guitar.", "A man sleeps.", "contradiction"),
    ("A man plays guitar.", "The man is famous.", "neutral"),
    (" Kids run outside. ", "Children are outdoors.", "entailment"),  # stripped: same sentence below
    ("Kids run outside.", "Kids sit inside.", "contradiction"),
    ("A dog barks.", "An animal makes noise.", "entailment"),  # no contradiction: no triplet
    ("Cats sleep.", "Cats are awake.", "contradiction"),  # no entailment: no triplet
    ("X is red.", "Y is a colour.", "entailment"),  # "Y is a colour." gets partners only in reverse
    ("Z is blue.", "Y is a colour.", "contradiction"),
]

# By hand: sentences in order of first appearance (s1 before s2 of each row); a sentence yields
# (s, entailment, contradiction) and (entailment, s, contradiction) when it has both partners,
# counting both directions.
EXPECTED = [
    ("A man plays guitar.", "A person plays music.", "A man sleeps."),
    ("A person plays music.", "A man plays guitar.", "A man sleeps."),
    ("Kids run outside.", "Children are outdoors.", "Kids sit inside."),
    ("Children are outdoors.", "Kids run outside.", "Kids sit inside."),
    ("Y is a colour.", "X is red.", "Z is blue."),
    ("X is red.", "Y is a colour.", "Z is blue."),
]


def test_triplets_from_hand_made_table():
    assert triplets_from_pairs(NLI_TABLE, seed=0) == EXPECTED
    assert triplets_from_pairs(NLI_TABLE, seed=123) == EXPECTED  # one candidate each: seed-independent


def test_triplets_draw_partners_at_random_but_seeded():
    pairs = []
    for i in range(40):
        s = f"Sentence {i}."
        pairs += [(s, f"E{i}a.", "entailment"), (s, f"E{i}b.", "entailment"),
                  (f"C{i}a.", s, "contradiction"), (s, f"C{i}b.", "contradiction")]
    a, b, c = (triplets_from_pairs(pairs, seed) for seed in (1, 1, 2))
    assert a == b and a != c
    mine = [t for t in a if t[0].startswith("Sentence") or t[1].startswith("Sentence")]
    assert len(mine) == 80  # two per sentence; E/C sentences have only one kind of partner
    for anchor, positive, negative in mine:
        s = anchor if anchor.startswith("Sentence") else positive
        i = s.split()[1].rstrip(".")
        assert {anchor, positive} - {s} <= {f"E{i}a.", f"E{i}b."}
        assert negative in {f"C{i}a.", f"C{i}b."}  # C{i}a. only reaches s through the reverse direction
    negatives = {n for _, _, n in mine}
    assert any(n.endswith("a.") for n in negatives) and any(n.endswith("b.") for n in negatives)
    assert len(a) == 80


# ---------------------------------------------------------------------------- readers


def test_reads_allnli_tsv_gz_train_split(tmp_path):
    path = tmp_path / "AllNLI.tsv.gz"
    rows = ["split\tdataset\tsentence1\tsentence2\tlabel",
            "train\tSNLI\tA man plays.\tA person plays.\tentailment",
            "dev\tSNLI\tDev row.\tNot used.\tentailment",
            'train\tMNLI\tHe said "hi".\tHe spoke.\tcontradiction']
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    data = read_file(path)
    assert data.pairs == [("A man plays.", "A person plays.", "entailment"),
                          ('He said "hi".', "He spoke.", "contradiction")]  # no quoting: quotes are text
    assert read_file(path, split="dev").pairs == [("Dev row.", "Not used.", "entailment")]


def test_reads_snli_jsonl_both_spellings(tmp_path):
    released = tmp_path / "snli.jsonl"
    released.write_text("\n".join(json.dumps(r) for r in [
        {"sentence1": "A.", "sentence2": "B.", "gold_label": "entailment", "annotator_labels": ["entailment"]},
        {"sentence1": "A.", "sentence2": "C.", "gold_label": "-"},  # no consensus: skipped
        {"sentence1": "A.", "sentence2": "D.", "gold_label": "contradiction"},
    ]) + "\n\n")
    hf = tmp_path / "hf.jsonl"
    hf.write_text("\n".join(json.dumps(r) for r in [
        {"premise": "P.", "hypothesis": "H0.", "label": 0},
        {"premise": "P.", "hypothesis": "H1.", "label": 1},
        {"premise": "P.", "hypothesis": "H2.", "label": 2},
        {"premise": "P.", "hypothesis": "Hx.", "label": -1},
        {"premise": "P.", "hypothesis": "Hs.", "label": "contradiction"},
    ]))
    a = read_file(released)
    assert a.pairs == [("A.", "B.", "entailment"), ("A.", "D.", "contradiction")] and a.skipped == 1
    b = read_file(hf)
    assert b.pairs == [("P.", "H0.", "entailment"), ("P.", "H1.", "neutral"), ("P.", "H2.", "contradiction"),
                       ("P.", "Hs.", "contradiction")] and b.skipped == 1


def test_reads_triplet_files_and_pools_sources(tmp_path):
    plain = tmp_path / "t.tsv"
    plain.write_text("a1\tp1\tn1\na2\tp2\tn2\n")
    headed = tmp_path / "h.tsv"
    headed.write_text("source\tanchor\tpositive\tnegative\nx\ta3\tp3\tn3\n")
    js = tmp_path / "t.jsonl"
    js.write_text(json.dumps({"anchor": "a4", "positive": "p4", "negative": "n4"}) + "\n")
    data = load([plain, headed, js])
    assert data.triplets == [("a1", "p1", "n1"), ("a2", "p2", "n2"), ("a3", "p3", "n3"), ("a4", "p4", "n4")]
    assert data.pairs == [] and len(data.sources) == 3


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"premise": "a", "hypothesis": "b", "label": 0}\n{oops\n', "bad.jsonl:2: not valid JSON"),
        ("lab.jsonl", '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n', "lab.jsonl:1: label 'maybe'"),
        ("lay.jsonl", '{"text": "a"}\n', "lay.jsonl:1: unknown layout"),
        ("two.tsv", "a\tb\n", "two.tsv: unknown layout"),
        ("short.tsv", "split\tdataset\tsentence1\tsentence2\tlabel\ntrain\tx\ty\n", "short.tsv:2: 3 tab-separated"),
        ("data.parquet", "x", "unknown file type"),
        ("empty.tsv", "", "empty file"),
    ],
)
def test_bad_files_fail_with_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_file(path)


def test_missing_file_and_no_sources(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load([tmp_path / "nope.tsv"])
    with pytest.raises(DataError, match="--data"):
        load([])


def test_hub_source_without_datasets_or_offline(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(DataError, match="pip install datasets"):
        read_hub("hf:sentence-transformers/all-nli")

    class Offline:
        @staticmethod
        def load_dataset(*args, **kwargs):
            raise ConnectionError("Couldn't reach the Hub\nmore details")

    monkeypatch.setitem(sys.modules, "datasets", Offline)
    with pytest.raises(DataError, match=r"hf:x/y: cannot load .*ConnectionError: Couldn't reach the Hub\)"):
        load(["hf:x/y"])


def test_hub_all_nli_reads_pair_class(monkeypatch):
    seen = {}

    class Fake:
        @staticmethod
        def load_dataset(name, config, split):
            seen.update(name=name, config=config, split=split)
            return [{"premise": "P.", "hypothesis": "H.", "label": 2}]

    monkeypatch.setitem(sys.modules, "datasets", Fake)
    assert load(["hf:sentence-transformers/all-nli"]).pairs == [("P.", "H.", "contradiction")]
    assert seen == {"name": "sentence-transformers/all-nli", "config": "pair-class", "split": "train"}


# ---------------------------------------------------------------------------- batching

BATCH_TABLE = [
    ("A cat sits.", "A cat is sitting.", "A dog runs."),
    ("a cat sits. ", "Cats sit.", "Nobody sits."),  # anchor repeats example 0's (strip().lower())
    ("The sun shines.", "It is sunny.", "It rains."),
    ("A dog runs.", "A dog is running.", "A cat sleeps."),  # anchor repeats example 0's negative
    ("Birds fly.", "Birds are flying.", "Birds swim."),
    ("Fish swim.", "Fish are swimming.", "Fish fly."),
]


class _Reverse:
    """A stand-in RNG whose shuffle reverses, so the wrap-around can be worked out by hand."""

    def shuffle(self, items):
        items.reverse()


def test_no_duplicates_batching_by_hand():
    batcher = NoDuplicatesBatcher(BATCH_TABLE, batch_size=3, seed=0)
    assert len(batcher) == 2  # floor(6 / 3)
    batcher.order, batcher.pointer, batcher.rng = list(range(6)), 0, _Reverse()
    # Batch 1: take 0; skip 1 (dup anchor); take 2; skip 3 (dup of 0's negative); take 4.
    assert batcher.next_batch() == [BATCH_TABLE[i] for i in (0, 2, 4)]
    # Batch 2: take 5; wrap → order reversed [5..0]; 5 repeats itself: skip; take 4; take 3.
    assert batcher.next_batch() == [BATCH_TABLE[i] for i in (5, 4, 3)]
    assert batcher.order == [5, 4, 3, 2, 1, 0] and batcher.pointer == 3


def test_no_duplicates_on_colliding_data_and_exact_state_round_trip():
    import random

    rng = random.Random(5)
    vocab = [f"Text {i}" for i in range(60)]
    examples = [tuple(rng.choice(vocab) + rng.choice(["", " ", "  "]) for _ in range(3)) for _ in range(300)]
    a = NoDuplicatesBatcher(examples, batch_size=8, seed="s")
    assert len(a) == 37
    for _ in range(50):  # more than an epoch: exercises the wrap-around
        batch = a.next_batch()
        keys = [t.strip().lower() for ex in batch for t in ex]
        assert len(batch) == 8
        # no text of one example appears in another example of the same batch
        per_example = [{t.strip().lower() for t in ex} for ex in batch]
        assert sum(len(k) for k in per_example) == len(set().union(*per_example)) <= len(keys)
    state = a.state_dict()
    b = NoDuplicatesBatcher(examples, batch_size=8, seed="other")
    b.load_state_dict(state)
    assert [a.next_batch() for _ in range(60)] == [b.next_batch() for _ in range(60)]


def test_batcher_rejects_too_little_data():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        NoDuplicatesBatcher(BATCH_TABLE, batch_size=64, seed=0)
    same = [("Same.", "Same.", "Same.")] * 10
    with pytest.raises(ValueError, match="too few distinct texts"):
        NoDuplicatesBatcher(same, batch_size=2, seed=0).next_batch()
