"""The BEIR retrieval evaluation: metrics against pytrec_eval (trec_eval), the whole path on a
hand-made BEIR folder (ingest, batched queries, three modes), a resumed run, the CLI."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from sgpt_qdrant.ingest import retrieval_metrics
from sgpt_qdrant.ingest.retrieval_eval import doc_id_of, evaluate_beir, file_name, load_beir

pytrec_eval = pytest.importorskip("pytrec_eval")

CORPUS = [
    ("d1", "Lighthouses", "A lighthouse keeper lit the lamp at dusk to warn ships off the rocks."),
    ("d2", "Tides", "The moon's gravity raises two tidal bulges, so most coasts see two high tides a day."),
    ("d3", "Sourdough", "A sourdough starter is flour and water fermented by wild yeast and lactobacilli."),
    ("d4", "Bees", "Honey bees find flowers by scent and tell the hive where they are with a waggle dance."),
    ("d5", "Errors", "ERR_CONNECTION_REFUSED means nothing listens on the port: start the server first."),
    ("d6", "Qdrant", "Qdrant stores sparse vectors and applies the IDF modifier at query time."),
    ("a/b 7", "", "Volcanoes erupt when magma pressure exceeds the strength of the overlying rock."),
    ("d8", "Glaciers", "Glaciers carve valleys as ice flows slowly downhill under its own weight."),
]
QUERIES = [("q1", "why do ships need a lighthouse"), ("q2", "two high tides every day moon"),
           ("q3", "wild yeast sourdough starter"), ("q4", "ERR_CONNECTION_REFUSED"),
           ("q5", "what does the IDF modifier do in Qdrant"), ("q6", "magma pressure volcano"),
           ("q7", "not judged")]
QRELS = [("q1", "d1", 2), ("q2", "d2", 1), ("q2", "d8", 1), ("q3", "d3", 2), ("q4", "d5", 1), ("q5", "d6", 2),
         ("q5", "d5", 0), ("q6", "a/b 7", 1)]


def _beir(folder):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, title, text in CORPUS:
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for i, text in QUERIES:
            f.write(json.dumps({"_id": i, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return folder


def _pytrec(qrels, run) -> dict[str, float]:
    """The four metrics by pytrec_eval, averaged as BEIR averages them; MRR@10 as recip_rank on the top 10."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map_cut.100", "recall.100"})
    scores = evaluator.evaluate(run)
    top10 = {q: {d: docs[d] for d in retrieval_metrics.ranked(docs)[:10]} for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(scores)
    return {"ndcg@10": sum(s["ndcg_cut_10"] for s in scores.values()) / n,
            "map@100": sum(s["map_cut_100"] for s in scores.values()) / n,
            "recall@100": sum(s["recall_100"] for s in scores.values()) / n,
            "mrr@10": sum(s["recip_rank"] for s in rr.values()) / n}


def test_metrics_agree_with_pytrec_eval_on_random_runs_with_ties():
    rng = random.Random(7)
    qrels = {f"q{i}": {f"d{j}": rng.choice([0, 1, 2, 3]) for j in rng.sample(range(200), 8)} for i in range(40)}
    qrels["q0"]["d0"] = 1  # at least one relevant somewhere
    run = {q: {f"d{j}": float(rng.choice([0.1, 0.2, 0.3, 1.0, rng.random()])) for j in rng.sample(range(200), 150)}
           for q in qrels}
    ours = retrieval_metrics.evaluate(qrels, run)
    theirs = _pytrec(qrels, run)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_metrics_by_hand():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"x": 3.0, "b": 2.0, "a": 1.0}}  # ranks: x (not judged), b (1), a (2)
    m = retrieval_metrics.evaluate(qrels, run)
    import math

    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(dcg / ideal)
    assert m["map@100"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["recall@100"] == 1.0 and m["mrr@10"] == 0.5


def test_ids_survive_the_file_names():
    for doc_id in ["a/b 7", "ü%.txt", "../x", "plain"]:
        name = file_name(doc_id)
        assert "/" not in name and doc_id_of(name) == doc_id


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_beir_folder_through_the_store_agrees_with_pytrec_eval_and_resumes(tmp_path, tiny_encoder, tiny_model_dir):
    data = _beir(tmp_path / "beir")
    seen = []
    report = evaluate_beir(data, store=tmp_path / "store", encoder=tiny_encoder, model=str(tiny_model_dir),
                           batch_size=4, on_progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert report.documents == len(CORPUS) and report.queries == 6  # q7 is not judged
    assert report.chunks_written >= len(CORPUS)
    qrels = load_beir(data).qrels
    for mode in ("dense", "sparse", "hybrid"):
        result = report.modes[mode]
        assert set(result.run) == set(qrels)
        if mode != "sparse":  # dense ranks every document (sparse only those sharing a term)
            assert all(len(docs) == len(CORPUS) for docs in result.run.values())
        assert result.metrics == pytest.approx(_pytrec(qrels, result.run), abs=1e-6)
    # BM25 puts the judged document first for every one of these keyword queries
    assert report.modes["sparse"].metrics["mrr@10"] == 1.0
    assert ("sparse", 4, 6) in seen and ("sparse", 6, 6) in seen  # batches of 4 queries
    again = evaluate_beir(data, store=tmp_path / "store", encoder=tiny_encoder, model=str(tiny_model_dir))
    assert again.chunks_written == 0
    assert {m: r.metrics for m, r in again.modes.items()} == {m: r.metrics for m, r in report.modes.items()}
    first = evaluate_beir(data, store=tmp_path / "store", encoder=tiny_encoder, model=str(tiny_model_dir),
                          modes=["dense"], first_chunk=True)
    assert first.chunks_written == 0 and first.first_chunk
    assert first.modes["dense"].metrics == pytest.approx(_pytrec(qrels, first.modes["dense"].run), abs=1e-6)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_cli_json_table_and_bad_data(tmp_path, tiny_model_dir):
    from sgpt_qdrant.ingest.retrieval_cli import cli

    data = _beir(tmp_path / "beir")
    runner = CliRunner()
    out = runner.invoke(cli, [str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--json", "-q",
                              "--mode", "sparse"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert set(report["modes"]) == {"sparse"} and report["modes"]["sparse"]["metrics"]["mrr@10"] == 1.0
    assert (data / "sgpt-eval" / "qdrant").is_dir()
    table = runner.invoke(cli, [str(data), "--model", str(tiny_model_dir), "--device", "cpu", "-q"])
    assert table.exit_code == 0, table.output
    assert "ndcg@10" in table.stdout and all(m in table.stdout for m in ("dense", "sparse", "hybrid"))
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\nnot json\n')
    bad = runner.invoke(cli, [str(data), "--model", str(tiny_model_dir), "--device", "cpu", "-q"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [f"sgpt-eval-retrieval: error: {data / 'queries.jsonl'}:2: not JSON "
                                               "(Expecting value)"]
