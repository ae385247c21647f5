"""End to end through the installed ``sgpt-ingest`` command (tiny model, embedded Qdrant)."""

from __future__ import annotations

import json
from contextlib import closing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest.cli import cli
from sgpt_qdrant.testing import gpt2_tokenizer

BIN = Path(sys.executable).parent / "sgpt-ingest"
REF = gpt2_tokenizer()
COLLECTION = "documents"

GUIDE = """# Garden guide

Tomatoes need six to eight hours of sun a day. Water them at the base in the morning so the leaves stay dry.

## Soil

""" + " ".join(f"Bed {i} gets a layer of compost before the spring planting, and it is turned twice." for i in range(25))

NOTES = "\n".join(f"Meeting note {i}: the committee agreed to repaint the bridge in colour number {i}." for i in range(30))

PAGE = ("<html><head><title>Bridge history</title><script>var tracking = true;</script></head><body>"
        "<h1>Bridge history</h1><p>The stone bridge was finished in 1821 after nine years of work.</p>"
        "<p>It was widened in 1910 so that trams could cross.</p></body></html>")


INTRO = "Intro\n=====\n\nThe archive holds letters, maps and photographs.\n"


def ingest(*args, env=None, check=True):
    proc = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=180)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def inproc(*args):
    """The same command in this process (no start-up cost), for set-up and reference runs."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def stored(path) -> dict:
    with closing(QdrantClient(path=str(path))) as client:
        points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, [round(x, 5) for x in p.vector["text-dense"]]) for p in points}


def make_docs(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "guide.md").write_text(GUIDE)
    (root / "sub" / "notes.txt").write_text(NOTES)
    (root / "sub" / "page.html").write_text(PAGE)
    (root / "intro.rst").write_text(INTRO)
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (root / "data.bin2").write_bytes(b"abc\0\0\0xyz")
    (root / "empty.txt").write_text("")
    (root / "latin1.txt").write_bytes("Café crème brûlée is a dessert.".encode("latin-1"))
    os.symlink(root, root / "sub" / "loop")
    return root


def test_help_documents_every_option():
    out = CliRunner().invoke(cli, ["--help"]).output
    for option in ["--collection", "--qdrant-path", "--qdrant-url", "QDRANT_API_KEY", "--model", "SGPT_MODEL",
                   "--device", "--batch-size", "--chunk-overlap", "--include", "--exclude", "--prune",
                   "--dry-run", "--json", "--quiet", "--prefer-grpc", "--timeout", "--partition", "--bulk-load",
                   "--shards", "--replication-factor", "--write-consistency", "--on-disk", "--quantization",
                   "--hnsw-m", "--hnsw-ef-construct", "--on-disk-payload", "--upsert-batch", "--in-flight"]:
        assert option in out


def test_ingest_rerun_edit_prune(tmp_path, tiny_model_dir):
    docs = make_docs(tmp_path / "docs")
    store = tmp_path / "qdrant"
    base = [docs, "--model", tiny_model_dir, "--qdrant-path", store, "--json", "--batch-size", 16]

    first = ingest(*base)
    summary = json.loads(first.stdout)
    assert summary["files_seen"] == 8 and summary["skipped"] == 3 and summary["failed"] == 0
    assert summary["ingested"] == 5  # guide, notes, page, intro, latin1 (not: png, bin2, empty)
    assert "latin1.txt" in first.stderr and "UTF-8" in first.stderr
    points = stored(store)
    assert len(points) == summary["chunks_written"]
    by_doc: dict[str, list] = {}
    for payload, _ in points.values():
        assert len(REF(payload["_node_content"] and json.loads(payload["_node_content"])["text"],
                       add_special_tokens=False)["input_ids"]) <= 75
        by_doc.setdefault(payload["doc_id"], []).append(payload)
    assert sorted(by_doc) == ["guide.md", "intro.rst", "latin1.txt", "sub/notes.txt", "sub/page.html"]
    for doc_id, text in [("guide.md", GUIDE), ("sub/notes.txt", NOTES)]:
        chunks = sorted(by_doc[doc_id], key=lambda p: p["chunk_index"])
        assert [p["chunk_index"] for p in chunks] == list(range(len(chunks)))
        words = " ".join(json.loads(p["_node_content"])["text"] for p in chunks).split()
        assert words == text.split()  # together they are the file's text, in order
        assert all(text[p["char_start"]:p["char_end"]] == json.loads(p["_node_content"])["text"] for p in chunks)
    page_text = " ".join(json.loads(p["_node_content"])["text"] for p in by_doc["sub/page.html"])
    assert "finished in 1821" in page_text and "tracking" not in page_text and "<p>" not in page_text

    again = json.loads(ingest(*base).stdout)
    assert again["unchanged"] == 5 and again["ingested"] == 0
    assert again["chunks_written"] == 0 and again["embed_seconds"] == 0
    assert stored(store) == points

    (docs / "guide.md").write_text("# Garden guide\n\nOnly tomatoes now.")  # shrinks to one chunk
    (docs / "sub" / "notes.txt").unlink()
    dry = json.loads(inproc(*base, "--prune", "--dry-run").stdout)
    assert dry["ingested"] == 1 and dry["documents_deleted"] == 1 and stored(store) == points
    edited = json.loads(ingest(*base, "--prune").stdout)
    assert edited["ingested"] == 1 and edited["unchanged"] == 3 and edited["documents_deleted"] == 1
    after = stored(store)
    guide = [p for p, _ in after.values() if p["doc_id"] == "guide.md"]
    assert len(guide) == 1 and json.loads(guide[0]["_node_content"])["text"] == "# Garden guide\n\nOnly tomatoes now."
    assert not any(p["doc_id"] == "sub/notes.txt" for p, _ in after.values())
    untouched = {k: v for k, v in points.items() if v[0]["doc_id"] not in {"guide.md", "sub/notes.txt"}}
    assert untouched and all(after[k] == v for k, v in untouched.items())
    assert len(after) == len(untouched) + 1


def test_wrong_dimension_refused_up_front(tmp_path, tiny_model_dir):
    store = tmp_path / "qdrant"
    with closing(QdrantClient(path=str(store))) as client:
        client.create_collection(COLLECTION, vectors_config={"text-dense": models.VectorParams(
            size=7, distance=models.Distance.COSINE)})
    (tmp_path / "a.txt").write_text("Some text.")
    proc = inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store)
    assert proc.exit_code == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "7-d Cosine" in proc.stderr and COLLECTION in proc.stderr
    assert stored(store) == {}


def test_locked_folder_one_line_error(tmp_path, tiny_model_dir):
    store = tmp_path / "qdrant"
    (tmp_path / "a.txt").write_text("Some text.")
    with closing(QdrantClient(path=str(store))):
        proc = ingest(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "in use by another process" in proc.stderr
    assert inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store).exit_code == 0  # released


def _start_paused(args):
    return subprocess.Popen([str(BIN), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SGPT_INGEST_TEST_PAUSE": "30"})


def _wait_for_batch(proc, n):
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if f"test pause after batch {n}" in line:
            return lines
    raise AssertionError("".join(lines))


def test_sigint_and_sigkill_then_rerun_equals_clean_run(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    v1 = {f"doc{i}.txt": " ".join(f"Version one, file {i}, sentence {j} about rivers." for j in range(40))
          for i in range(4)}
    v2 = {**{k: v[: len(v) // 2] for k, v in v1.items()}, "new.md": "# New\n\n" + "Fresh text here. " * 60}
    clean_store, store = tmp_path / "clean", tmp_path / "qdrant"

    def write(version):
        for p in docs.iterdir():
            p.unlink()
        for name, text in version.items():
            (docs / name).write_text(text)

    write(v2)
    assert inproc(docs, "--model", tiny_model_dir, "--qdrant-path", clean_store, "--batch-size", 4).exit_code == 0
    expected = stored(clean_store)

    write(v1)
    assert inproc(docs, "--model", tiny_model_dir, "--qdrant-path", store, "--batch-size", 4).exit_code == 0
    write(v2)
    args = [docs, "--model", tiny_model_dir, "--qdrant-path", store, "--batch-size", 4, "--prune"]

    proc = _start_paused(args)
    _wait_for_batch(proc, 1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err

    proc = _start_paused(args)
    _wait_for_batch(proc, 2)  # the first document half rewritten
    proc.kill()  # SIGKILL: no cleanup at all
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert stored(store) != expected

    ingest(*args)
    assert stored(store) == expected


@pytest.mark.parametrize("example,extra", [("query_qdrant.py", ["--file-name", "intro.rst", "--limit", "1"]),
                                           ("query_llamaindex.py", ["--top-k", "1"])])
def test_examples_find_a_stored_passage(tmp_path_factory, tiny_model_dir, example, extra):
    store = _example_store(tmp_path_factory, tiny_model_dir)
    passage = INTRO.strip()  # one whole chunk: the random tiny model ranks it first only on exact text
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "examples" / example), passage, "--model", str(tiny_model_dir),
                           "--qdrant-path", str(store), *extra], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "The archive holds letters, maps and photographs." in proc.stdout and "intro.rst #0" in proc.stdout


_STORE: dict = {}


def _example_store(tmp_path_factory, tiny_model_dir) -> Path:
    if "path" not in _STORE:
        docs = make_docs(tmp_path_factory.mktemp("example") / "docs")
        store = docs.parent / "qdrant"
        assert inproc(docs, "--model", tiny_model_dir, "--qdrant-path", store, "--quiet").exit_code == 0
        _STORE["path"] = store
    return _STORE["path"]


def test_setup_errors_are_one_line(tmp_path, tiny_model_dir):
    proc = inproc(tmp_path / "missing", "--model", tiny_model_dir, "--qdrant-path", tmp_path / "q")
    assert proc.exit_code == 2 and len(proc.stderr.strip().splitlines()) == 1 and "missing" in proc.stderr
    assert not (tmp_path / "q").exists()
    (tmp_path / "a.txt").write_text("Some text.")
    proc = inproc(tmp_path / "a.txt", "--model", tmp_path / "no-model", "--qdrant-path", tmp_path / "q")
    assert proc.exit_code == 2 and len(proc.stderr.strip().splitlines()) == 1 and "no-model" in proc.stderr
    assert not (tmp_path / "q").exists()
    proc = inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", tmp_path / "q", "--dry-run", "--json")
    assert proc.exit_code == 0 and json.loads(proc.stdout)["ingested"] == 1
    assert not (tmp_path / "q").exists()  # a dry run creates nothing


def test_a_failed_file_is_named_and_the_others_are_done(tmp_path, tiny_model_dir):
    for folder, text in [("one", "First folder text."), ("two", "Second folder text.")]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.txt").write_text(text)
    (tmp_path / "two" / "other.txt").write_text("Another file.")
    proc = inproc(tmp_path / "one", tmp_path / "two", "--model", tiny_model_dir, "--qdrant-path", tmp_path / "q",
                  "--json")
    assert proc.exit_code == 1
    summary = json.loads(proc.stdout)
    assert summary["failed"] == 1 and summary["ingested"] == 2
    assert str(tmp_path / "two" / "same.txt") in proc.stderr
    texts = {json.loads(p["_node_content"])["text"] for p, _ in stored(tmp_path / "q").values()}
    assert texts == {"First folder text.", "Another file."}



def _docs_by_id(path) -> set[str]:
    return {payload["doc_id"] for payload, _ in stored(path).values()}


def test_partitions_fill_one_collection_and_prune_only_their_share(tmp_path, tiny_model_dir):
    from sgpt_qdrant.ingest.partition import share_of

    docs = tmp_path / "docs"
    docs.mkdir()
    names = [f"note-{i:02d}.txt" for i in range(12)]
    for i, name in enumerate(names):
        (docs / name).write_text(f"Note {i} says the tide was {i} metres at noon. " * (1 + i % 3))
    store = tmp_path / "qdrant"
    base = [docs, "--model", tiny_model_dir, "--qdrant-path", store, "--json", "--prune"]
    seen = []
    for k in (1, 2, 3):
        proc = inproc(*base, "--partition", f"{k}/3")
        assert proc.exit_code == 0, proc.stderr
        seen.append(json.loads(proc.stdout)["files_seen"])
        assert _docs_by_id(store) == {n for n in names if share_of(n, 3) <= k}  # each worker adds its share only
    assert sum(seen) == len(names) and all(seen)
    assert _docs_by_id(store) == set(names)

    # one deleted file in two different shares; worker A's --prune removes only its own
    first, second = sorted({share_of(n, 3) for n in names})[:2]
    gone_a = next(n for n in names if share_of(n, 3) == first)
    gone_b = next(n for n in names if share_of(n, 3) == second)
    (docs / gone_a).unlink()
    (docs / gone_b).unlink()
    proc = inproc(*base, "--partition", f"{first}/3")
    assert proc.exit_code == 0 and json.loads(proc.stdout)["documents_deleted"] == 1
    assert _docs_by_id(store) == set(names) - {gone_a}

    proc = inproc(*base, "--partition", "4/3")
    assert proc.exit_code == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--partition" in proc.stderr


def _bulk_marker(path):
    with closing(QdrantClient(path=str(path))) as client:
        return (client.get_collection(COLLECTION).config.metadata or {}).get("sgpt_bulk_load")


def test_bulk_load_restores_index_settings_after_a_normal_and_a_killed_run(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"d{i}.txt").write_text(" ".join(f"File {i} line {j} on bulk loads." for j in range(30)))
    store, clean = tmp_path / "qdrant", tmp_path / "clean"
    args = [docs, "--model", tiny_model_dir, "--qdrant-path", store, "--batch-size", 4]

    proc = inproc(*args, "--bulk-load", "--qdrant-path", clean)
    assert proc.exit_code == 0, proc.stderr
    assert "indexing deferred" in proc.stderr and "bulk-load mode on collection 'documents' ended" in proc.stderr
    assert _bulk_marker(clean) is None  # restored and unmarked

    proc = _start_paused([*args, "--bulk-load"])
    _wait_for_batch(proc, 1)
    proc.kill()  # SIGKILL mid-load: the marker stays in the collection
    proc.communicate(timeout=60)
    marker = _bulk_marker(store)
    assert marker and marker["active"]

    proc = inproc(*args)  # a normal run restores and finishes the job
    assert proc.exit_code == 0, proc.stderr
    assert "restored the index settings of an interrupted bulk load" in proc.stderr
    assert _bulk_marker(store) is None
    assert stored(store) == stored(clean)


def test_python_api_creates_the_collection_with_the_given_settings(tmp_path, tiny_model_dir):
    from sgpt_qdrant import IngestOptions, ingest_paths

    (tmp_path / "a.txt").write_text("Vectors on disk, please.")
    store = tmp_path / "q"
    summary = ingest_paths([tmp_path / "a.txt"], model=tiny_model_dir, path=store,
                           options=IngestOptions(settings={"on_disk": True}))
    assert summary.ingested == summary.new == summary.chunks_written == 1 and summary.failed == 0
    with closing(QdrantClient(path=str(store))) as client:
        params = client.get_collection(COLLECTION).config.params.vectors["text-dense"]
    assert params.on_disk is True and params.distance == models.Distance.COSINE
    assert len(stored(store)) == 1


def test_ctrl_c_during_a_bulk_load_restores_the_index_settings_at_once(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(2):
        (docs / f"d{i}.txt").write_text(" ".join(f"File {i} line {j} about interrupts." for j in range(30)))
    store = tmp_path / "qdrant"
    proc = _start_paused([docs, "--model", tiny_model_dir, "--qdrant-path", store, "--batch-size", 4, "--bulk-load"])
    _wait_for_batch(proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "restored the index settings of an interrupted bulk load" in err
    assert _bulk_marker(store) is None
