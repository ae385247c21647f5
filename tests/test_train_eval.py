"""STS evaluation: the eight correlations against a hand computation, the two STS-B file
layouts, the CSV, and the model-selection score."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest

from sgpt_qdrant.train.data import DataError
from sgpt_qdrant.train.evaluate import CSV_COLUMNS, append_csv, main_score, read_sts, similarity_metrics


def _ranks(x):  # no ties in these data: rank = position in sorted order
    r = np.empty(len(x))
    r[np.argsort(x)] = np.arange(len(x))
    return r


def _pearson(x, y):
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def test_metrics_equal_hand_computation():
    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    gold = rng.uniform(0, 1, size=30)
    got = similarity_metrics(e1.astype(np.float32), e2.astype(np.float32), gold)
    sims = {
        "cosine": [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(e1, e2)],
        "euclidean": [-np.sqrt(((a - b) ** 2).sum()) for a, b in zip(e1, e2)],
        "manhattan": [-np.abs(a - b).sum() for a, b in zip(e1, e2)],
        "dot": [a @ b for a, b in zip(e1, e2)],
    }
    assert set(got) == set(CSV_COLUMNS[2:])
    for name, sim in sims.items():
        sim = np.asarray(sim)
        assert got[f"{name}_pearson"] == pytest.approx(_pearson(gold, sim), abs=1e-6)
        assert got[f"{name}_spearman"] == pytest.approx(_pearson(_ranks(gold), _ranks(sim)), abs=1e-6)
    assert main_score(got) == max(got[f"{n}_spearman"] for n in sims)


def test_metric_sign_conventions():
    """Closer pairs must score higher on every metric (distances are negated)."""
    base = np.ones((4, 3))
    other = base + np.array([[0.0], [0.5], [1.0], [2.0]]) * np.array([[1.0, -1.0, 0.5]])
    gold = np.array([1.0, 0.7, 0.4, 0.1])
    got = similarity_metrics(base, other, gold)
    for name in ("cosine", "euclidean", "manhattan"):
        assert got[f"{name}_spearman"] == pytest.approx(1.0)


ORIGINAL = [
    "main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane is taking off.\tAn air plane is taking off.",
    "main-news\theadlines\t2013\t0002\t1.250\tShe said \"no\".\tHe left.\textra\tfields",
    "main-forum\tdeft\t2014\t0003\t0.000\tA.\tB.",
]


def test_reads_original_sts_csv(tmp_path):
    path = tmp_path / "sts-dev.csv"
    path.write_text("\n".join(ORIGINAL) + "\n", encoding="utf-8")
    sts = read_sts(path)
    assert sts.name == "sts-dev"
    assert sts.sentences1 == ["A plane is taking off.", 'She said "no".', "A."]
    assert sts.sentences2 == ["An air plane is taking off.", "He left.", "B."]
    np.testing.assert_allclose(sts.scores, [1.0, 0.25, 0.0])


def test_reads_stsbenchmark_tsv_gz_split(tmp_path):
    path = tmp_path / "stsbenchmark.tsv.gz"
    rows = ["split\tgenre\tdataset\tyear\tsid\tscore\tsentence1\tsentence2",
            "train\tg\td\t2012\t1\t4.0\tTrain a.\tTrain b.",
            "dev\tg\td\t2012\t2\t2.5\tDev a.\tDev b.",
            "test\tg\td\t2012\t3\t5.0\tTest a.\tTest b.",
            "test\tg\td\t2012\t4\t0.5\tTest c.\tTest d."]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    test = read_sts(path, "test")
    assert test.name == "sts-test" and test.sentences1 == ["Test a.", "Test c."]
    np.testing.assert_allclose(test.scores, [1.0, 0.1])
    with pytest.raises(DataError, match="fewer than 2 scored pairs in split 'dev'"):
        read_sts(path, "dev")


def test_bad_sts_files(tmp_path):
    short = tmp_path / "sts-x.csv"
    short.write_text(ORIGINAL[0] + "\na\tb\tc\n")
    with pytest.raises(DataError, match="sts-x.csv:2: 3 tab-separated fields"):
        read_sts(short)
    score = tmp_path / "sts-y.csv"
    score.write_text(ORIGINAL[0].replace("5.000", "high") + "\n")
    with pytest.raises(DataError, match="sts-y.csv:1: score 'high'"):
        read_sts(score)
    with pytest.raises(DataError, match="no such STS file"):
        read_sts(tmp_path / "missing.csv")


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-0.5", "5.5"])
def test_a_score_outside_0_to_5_is_refused_naming_the_row(tmp_path, bad):
    """One NaN gold score made every correlation NaN, and the run silently kept its first model."""
    path = tmp_path / "sts-dev.csv"
    lines = list(ORIGINAL)
    lines[1] = lines[1].replace("\t1.250\t", f"\t{bad}\t")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"sts-dev.csv:2: score '{bad}' is not a number in 0..5"):
        read_sts(path)


def test_csv_layout_matches_the_original(tmp_path):
    sts = read_sts(_write(tmp_path))
    metrics = {m: i / 10 for i, m in enumerate(CSV_COLUMNS[2:])}
    append_csv(tmp_path / "eval", sts, 0, 880, metrics)
    path = append_csv(tmp_path / "eval", sts, 0, -1, metrics)
    assert path.name == "similarity_evaluation_sts-dev_results.csv"
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "steps", "cosine_pearson", "cosine_spearman", "euclidean_pearson",
                       "euclidean_spearman", "manhattan_pearson", "manhattan_spearman", "dot_pearson", "dot_spearman"]
    assert rows[1][:3] == ["0", "880", "0.0"] and rows[2][:2] == ["0", "-1"] and len(rows) == 3


def _write(tmp_path):
    path = tmp_path / "sts-dev.csv"
    path.write_text("\n".join(ORIGINAL) + "\n")
    return path
