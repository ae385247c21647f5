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

from sgpt_qdrant.ingest.edge import EdgeClient
from sgpt_qdrant.ingest.cli import cli
from sgpt_qdrant.testing import gpt2_tokenizer

import paused_ingest  # tests/: sgpt-ingest pausing after each batch

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


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Model fingerprints are cached under XDG_CACHE_HOME: a test's own, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


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
    with closing(EdgeClient(path)) as client:
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


@pytest.mark.slow  # several full runs end to end (multi-second)
def test_ingest_rerun_edit_prune(tmp_path, tiny_model_dir):
    docs = make_docs(tmp_path / "docs")
    store = tmp_path / "qdrant"
    base = [docs, "--model", tiny_model_dir, "--qdrant-path", store, "--json", "--batch-size", 16]

    first = inproc(*base)
    assert first.exit_code == 0, first.stderr
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
    assert sorted(by_doc) == ["docs/guide.md", "docs/intro.rst", "docs/latin1.txt", "docs/sub/notes.txt",
                              "docs/sub/page.html"]
    for doc_id, text in [("docs/guide.md", GUIDE), ("docs/sub/notes.txt", NOTES)]:
        chunks = sorted(by_doc[doc_id], key=lambda p: p["chunk_index"])
        assert [p["chunk_index"] for p in chunks] == list(range(len(chunks)))
        words = " ".join(json.loads(p["_node_content"])["text"] for p in chunks).split()
        assert words == text.split()  # together they are the file's text, in order
        assert all(text[p["char_start"]:p["char_end"]] == json.loads(p["_node_content"])["text"] for p in chunks)
    page_text = " ".join(json.loads(p["_node_content"])["text"] for p in by_doc["docs/sub/page.html"])
    assert "finished in 1821" in page_text and "tracking" not in page_text and "<p>" not in page_text

    again = json.loads(inproc(*base).stdout)
    assert again["unchanged"] == 5 and again["ingested"] == 0
    assert again["chunks_written"] == 0 and again["embed_seconds"] == 0 and again["model_load_seconds"] == 0
    assert stored(store) == points

    (docs / "guide.md").write_text("# Garden guide\n\nOnly tomatoes now.")  # shrinks to one chunk
    (docs / "sub" / "notes.txt").unlink()
    dry = json.loads(inproc(*base, "--prune", "--dry-run").stdout)
    assert dry["ingested"] == 1 and dry["documents_deleted"] == 1 and stored(store) == points
    edited = json.loads(inproc(*base, "--prune").stdout)
    assert edited["ingested"] == 1 and edited["unchanged"] == 3 and edited["documents_deleted"] == 1
    after = stored(store)
    guide = [p for p, _ in after.values() if p["doc_id"] == "docs/guide.md"]
    assert len(guide) == 1 and json.loads(guide[0]["_node_content"])["text"] == "# Garden guide\n\nOnly tomatoes now."
    assert not any(p["doc_id"] == "docs/sub/notes.txt" for p, _ in after.values())
    untouched = {k: v for k, v in points.items() if v[0]["doc_id"] not in {"docs/guide.md", "docs/sub/notes.txt"}}
    assert untouched and all(after[k] == v for k, v in untouched.items())
    assert len(after) == len(untouched) + 1


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_wrong_dimension_refused_up_front(tmp_path, tiny_model_dir):
    store = tmp_path / "qdrant"
    with closing(EdgeClient(store)) as client:
        client.create_collection(COLLECTION, vectors_config={"text-dense": models.VectorParams(
            size=7, distance=models.Distance.COSINE)})
    (tmp_path / "a.txt").write_text("Some text.")
    proc = inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store)
    assert proc.exit_code == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "7-d Cosine" in proc.stderr and COLLECTION in proc.stderr
    assert stored(store) == {}


def _start_paused(args):
    return subprocess.Popen(paused_ingest.command(30, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_batch(proc, n):
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if f"test pause after batch {n}" in line:
            return lines
    raise AssertionError("".join(lines))


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_failed_file_is_named_and_the_others_are_done(tmp_path, tiny_model_dir):
    # two folders of the same name give the same ids (docs/same.txt): the second is refused in one run
    for folder, text in [("one", "First folder text."), ("two", "Second folder text.")]:
        (tmp_path / folder / "docs").mkdir(parents=True)
        (tmp_path / folder / "docs" / "same.txt").write_text(text)
    (tmp_path / "two" / "docs" / "other.txt").write_text("Another file.")
    proc = inproc(tmp_path / "one" / "docs", tmp_path / "two" / "docs", "--model", tiny_model_dir, "--qdrant-path",
                  tmp_path / "q", "--json")
    assert proc.exit_code == 1
    summary = json.loads(proc.stdout)
    assert summary["failed"] == 1 and summary["ingested"] == 2
    assert str(tmp_path / "two" / "docs" / "same.txt") in proc.stderr
    texts = {json.loads(p["_node_content"])["text"] for p, _ in stored(tmp_path / "q").values()}
    assert texts == {"First folder text.", "Another file."}



def _docs_by_id(path) -> set[str]:
    return {payload["doc_id"] for payload, _ in stored(path).values()}


@pytest.mark.slow  # several full runs end to end (multi-second)
def test_partitions_fill_one_collection_and_prune_only_their_share(tmp_path, tiny_model_dir):
    from sgpt_qdrant.ingest.partition import share_of

    docs = tmp_path / "docs"
    docs.mkdir()
    names = [f"docs/note-{i:02d}.txt" for i in range(12)]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"Note {i} says the tide was {i} metres at noon. " * (1 + i % 3))
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
    (tmp_path / gone_a).unlink()
    (tmp_path / gone_b).unlink()
    proc = inproc(*base, "--partition", f"{first}/3")
    assert proc.exit_code == 0 and json.loads(proc.stdout)["documents_deleted"] == 1
    assert _docs_by_id(store) == set(names) - {gone_a}

    proc = inproc(*base, "--partition", "4/3")
    assert proc.exit_code == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--partition" in proc.stderr


def _bulk_marker(path):
    with closing(EdgeClient(path)) as client:
        return (client.get_collection(COLLECTION).config.metadata or {}).get("sgpt_bulk_load")


@pytest.mark.slow
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


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_python_api_creates_the_collection_with_the_given_settings(tmp_path, tiny_model_dir):
    from sgpt_qdrant import IngestOptions, ingest_paths
    from sgpt_qdrant.ingest import CollectionSettings, StoreTarget

    (tmp_path / "a.txt").write_text("Vectors on disk, please.")
    store = tmp_path / "q"
    summary = ingest_paths([tmp_path / "a.txt"], model=tiny_model_dir, store=StoreTarget(store),
                           options=IngestOptions(settings=CollectionSettings(on_disk=True)))
    assert summary.ingested == summary.new == summary.chunks_written == 1 and summary.failed == 0
    with closing(EdgeClient(store)) as client:
        params = client.get_collection(COLLECTION).config.params.vectors["text-dense"]
    assert params.on_disk is True and params.distance == models.Distance.COSINE
    assert len(stored(store)) == 1


@pytest.mark.slow
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


# -- work it does not need: the model is loaded only to embed ---------------------------------------

class _NoModel:
    """Stands in for sgpt_qdrant.Encoder: building it fails the test."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("the model was loaded")


@pytest.mark.slow  # several full runs end to end (multi-second)
def test_unchanged_rerun_dry_run_and_locked_store_never_load_the_model(tmp_path, tiny_model_dir, monkeypatch):
    import sgpt_qdrant

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(8):
        (docs / f"n{i}.md").write_text(f"Note {i} about the harbour lights. " * (3 + i))
    store = tmp_path / "q"
    base = [docs, "--model", tiny_model_dir, "--qdrant-path", store]
    first = inproc(*base)
    assert first.exit_code == 0 and "loading the model" in first.stderr  # said while it loads
    monkeypatch.setattr(sgpt_qdrant, "Encoder", _NoModel, raising=False)

    again = inproc(*base, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == 8 and "loading the model" not in again.stderr

    (docs / "n0.md").write_text("Rewritten note.")
    (docs / "n1.md").unlink()
    (docs / "new.md").write_text("A new note.")
    dry = inproc(*base, "--dry-run", "--prune", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["documents"] == {
        "new": ["docs/new.md"], "changed": ["docs/n0.md"], "unchanged": [f"docs/n{i}.md" for i in range(2, 8)],
        "pruned": ["docs/n1.md"]}
    terminal = inproc(*base, "--dry-run", "--prune")
    assert terminal.exit_code == 0
    assert "  unchanged (6): docs/n2.md, docs/n3.md, docs/n4.md, docs/n5.md, docs/n6.md and 1 more" in terminal.stderr
    assert "  new (1): docs/new.md" in terminal.stderr and "  pruned (1): docs/n1.md" in terminal.stderr

    with closing(EdgeClient(store)):  # another process holds the folder
        locked = inproc(*base)
    assert locked.exit_code == 2 and "in use by another process" in locked.stderr
    assert len(locked.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_progress_is_counted_in_chunks_and_printed_periodically_off_a_terminal(tmp_path, tiny_model_dir):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(" ".join(f"Sentence {i} of one long file about lighthouses." for i in range(400)))
    proc = inproc(docs, "--model", tiny_model_dir, "--qdrant-path", tmp_path / "q", "--batch-size", 2,
                  "--progress-interval", "0.1", "--json")
    assert proc.exit_code == 0, proc.stderr
    total = json.loads(proc.stdout)["chunks_written"]
    lines = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert lines, proc.stderr  # one file only, yet the record moves while it is embedded
    written = [int(line.split("files, ")[1].split("/")[0]) for line in lines]
    assert any(0 < w < total for w in written) and written == sorted(written)
    assert all(f"/~{total} chunks" in line for line in lines)  # the file's chunks are known once it is read


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_long_paragraph_does_not_print_the_tokenizer_length_warning(tmp_path, tiny_model_dir):
    import logging

    from sgpt_qdrant import IngestOptions, ingest_paths
    from sgpt_qdrant.ingest import StoreTarget

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")  # where transformers prints from (it does not propagate)
    logger.addHandler(handler)
    try:
        (tmp_path / "a.txt").write_text("word " * 5000)  # one paragraph of 5,000 tokens > the tokenizer's 2,048
        summary = ingest_paths([tmp_path / "a.txt"], model=tiny_model_dir, store=StoreTarget(tmp_path / "q"),
                               options=IngestOptions())
    finally:
        logger.removeHandler(handler)
    assert summary.chunks_written > 60
    assert not [r for r in records if "Token indices sequence length" in r.getMessage()]


# -- hostile input: file names, model identity ------------------------------------------------------

@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_non_utf8_file_name_is_ingested_and_blocks_nothing(tmp_path, tiny_model_dir):
    import hashlib
    import uuid

    docs = tmp_path / "docs"
    docs.mkdir()
    raw = os.fsencode(docs) + b"/caf\xff.txt"
    with open(raw, "wb") as f:
        f.write(b"A file whose name is not UTF-8.")
    for i in range(3):
        (docs / f"ok{i}.txt").write_text(f"Ordinary file {i}.")
    base = [docs, "--model", tiny_model_dir, "--qdrant-path", tmp_path / "q", "--json", "--prune"]
    proc = inproc(*base)
    assert proc.exit_code == 0, proc.stderr
    assert json.loads(proc.stdout)["ingested"] == 4
    points = stored(tmp_path / "q")
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/sgpt-qdrant/ingest")
    # RFC 4122 name-based id over the name's bytes, by hand
    expected = str(uuid.UUID(bytes=hashlib.sha1(namespace.bytes + b"docs/caf\xff.txt#0").digest()[:16], version=5))
    payload, _ = points[expected]
    assert payload["doc_id"] == "docs/caf\\xff.txt" and payload["file_path"].endswith("/caf\\xff.txt")
    assert str(uuid.uuid5(namespace, "docs/ok0.txt#0")) in points  # UTF-8 names: uuid5 of the id
    again = inproc(*base)
    assert again.exit_code == 0 and json.loads(again.stdout)["unchanged"] == 4  # and it is found again


@pytest.mark.slow  # several full runs end to end (multi-second)
def test_a_model_replaced_at_the_same_path_re_embeds(tmp_path):
    from sgpt_qdrant.testing import write_random_checkpoint

    model = tmp_path / "model"
    write_random_checkpoint(model, seed=1)
    (tmp_path / "a.txt").write_text("The same text, embedded by two different models.")
    base = [tmp_path / "a.txt", "--model", model, "--qdrant-path", tmp_path / "q", "--json"]
    assert inproc(*base).exit_code == 0
    before = stored(tmp_path / "q")
    assert json.loads(inproc(*base).stdout)["unchanged"] == 1
    write_random_checkpoint(model, seed=2)  # new weights, same folder
    proc = inproc(*base)
    assert json.loads(proc.stdout)["changed"] == 1
    after = stored(tmp_path / "q")
    assert after.keys() == before.keys() and all(after[k][1] != before[k][1] for k in after)


# -- the API key is never printed; set-up errors name the server and what to do ---------------------

KEY = "SECRET-XYZ"


def _key_run(url, docs, model, key, *extra):
    runner = CliRunner(env={"QDRANT_API_KEY": key})
    return runner.invoke(cli, [str(docs), "--model", str(model), "--qdrant-url", url, "--timeout", "2", *extra])


def _no_key(proc):
    for text in (proc.stdout, proc.stderr):
        assert KEY not in text and "api-key" not in text.lower()


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_api_key_with_whitespace_is_stripped_and_never_printed(tmp_path, tiny_model_dir, standin):
    (tmp_path / "a.txt").write_text("Text for the server.")
    standin.api_key = KEY
    ok = _key_run(standin.url, tmp_path / "a.txt", tiny_model_dir, f" {KEY} \r\n", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["chunks_written"] == 1 and len(standin.points(COLLECTION)) == 1
    _no_key(ok)

    standin.api_key = "another-key"  # 401 whose body echoes our headers, key included
    for extra in ([], ["--json"]):
        denied = _key_run(standin.url, tmp_path / "a.txt", tiny_model_dir, KEY, *extra)
        assert denied.exit_code == 2, denied.output
        _no_key(denied)
        assert standin.url in denied.stderr and "QDRANT_API_KEY" in denied.stderr

    bad = _key_run(standin.url, tmp_path / "a.txt", tiny_model_dir, KEY + "é")
    assert bad.exit_code == 2 and "QDRANT_API_KEY" in bad.stderr and "non-ASCII" in bad.stderr
    _no_key(bad)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_write_rejected_mid_run_names_the_server_not_the_key(tmp_path, tiny_model_dir, standin):
    (tmp_path / "a.txt").write_text("Text for the server.")
    real = type(standin).dispatch

    def reject_upserts(self, method, path, body, entry):  # echoes the request as a careless server would
        if path.endswith("/points") and method == "PUT":
            return 400, {"status": {"error": f"bad request; api-key: {KEY}"}}
        return real(self, method, path, body, entry)

    standin.dispatch = reject_upserts.__get__(standin)
    proc = _key_run(standin.url, tmp_path / "a.txt", tiny_model_dir, KEY, "--json")
    assert proc.exit_code == 1 and "rejected the upsert" in proc.stderr and standin.url in proc.stderr
    _no_key(proc)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_connection_refused_and_a_server_that_is_not_qdrant(tmp_path, tiny_model_dir):
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    (tmp_path / "a.txt").write_text("Some text.")
    with socket.socket() as s:  # a free port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = _key_run(f"http://127.0.0.1:{port}", tmp_path / "a.txt", tiny_model_dir, KEY)
    assert refused.exit_code == 2 and f"http://127.0.0.1:{port}" in refused.stderr
    assert "is the server running" in refused.stderr
    _no_key(refused)

    class NotQdrant(BaseHTTPRequestHandler):
        def _answer(self):
            body = b"<html>a web page</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = _key_run(url, tmp_path / "a.txt", tiny_model_dir, KEY)
    finally:
        server.shutdown()
    assert proc.exit_code == 2 and url in proc.stderr and "REST address of a Qdrant server" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "sgpt-ingest: error" in line]) == 1
    _no_key(proc)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_damaged_embedded_store_names_its_file(tmp_path, tiny_model_dir):
    store = tmp_path / "q"
    (tmp_path / "a.txt").write_text("Some text.")
    assert inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store).exit_code == 0
    settings = store / "collections" / COLLECTION / "collection.json"
    settings.write_text(settings.read_text()[:20])  # cut short
    proc = inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sgpt-ingest: error")]
    assert proc.exit_code == 2 and len(errors) == 1
    assert str(settings) in errors[0] and "--qdrant-path" in errors[0]


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_legacy_local_mode_store_is_refused_with_the_command_that_migrates_it(tmp_path, tiny_model_dir):
    store = tmp_path / "q"
    (store / "collection" / COLLECTION).mkdir(parents=True)
    (store / "meta.json").write_text('{"collections": {}, "aliases": {}}')
    (store / "collection" / COLLECTION / "storage.sqlite").write_bytes(b"")  # never opened
    (tmp_path / "a.txt").write_text("Some text.")
    proc = inproc(tmp_path / "a.txt", "--model", tiny_model_dir, "--qdrant-path", store)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sgpt-ingest: error")]
    assert proc.exit_code == 2 and len(errors) == 1
    assert f"a store written by qdrant-client local mode" in errors[0]
    assert f"sgpt-store migrate --qdrant-path {store}" in errors[0]
    assert sorted(p.name for p in store.iterdir()) == ["collection", "meta.json"]  # nothing written there
