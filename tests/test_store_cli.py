"""sgpt-store and copy_collection: migrate local mode in place, copy Edge <-> server, verified.

References: the points a test wrote itself (ids, payloads, vectors), qdrant-client's own local
mode for the legacy store, the stand-in server's stored dict, and sgpt-ingest's own summary."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest import client as qc
from sgpt_qdrant.ingest import store_cli
from sgpt_qdrant.ingest.edge import is_edge_store
from sgpt_qdrant.ingest.copy import KEYWORD_FIELDS, CopyError, copy_collection
from sgpt_qdrant.ingest.client import StoreTarget, legacy_local_store
from sgpt_qdrant.ingest.legacy_local import LegacyLocalStore
from sgpt_qdrant.ingest.store_cli import cli, migration_paths
from test_legacy_store import COLLECTION, DIM, Evil, _points, plant, storage_file, write_store

DOCS = Path(__file__).resolve().parents[1] / "examples" / "docs"
# qdrant-client checks a server's version in a background thread: the stand-in may be gone (or answer 401
# to a wrong key) by then, and the warning lands in whichever test runs next.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv(qc.API_KEY_ENV, raising=False)


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def last_line(result) -> str:
    """The command's one message line (warnings of libraries may come before it)."""
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("sgpt-store: warning: ") for line in lines[:-1]), result.stderr
    return lines[-1]


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file's bytes (the lock file aside): a store left untouched has the same digest."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def unit(v) -> list[float]:
    x = np.asarray(v, dtype=np.float64)
    return (x / np.linalg.norm(x)).tolist()


def scroll_all(client, name: str = COLLECTION, limit: int = 64):
    """Every point of ``name`` with payload and vectors, page after page."""
    offset = None
    while True:
        page, offset = client.scroll(name, limit=limit, offset=offset, with_payload=True, with_vectors=True)
        yield from page
        if offset is None:
            return


def _comparable(point) -> tuple:
    """(payload, dense vector normalised, sparse as sorted pairs) of a stored record or a written point."""
    vector = point.vector or {}
    sparse = vector.get("text-sparse")
    return (point.payload or {}, unit(vector["text-dense"]),
            sorted(zip(sparse.indices, sparse.values)) if sparse is not None else None)


def contents(client, name: str = COLLECTION) -> dict[str, tuple]:
    """id -> :func:`_comparable`, from a full scroll."""
    return {str(r.id): _comparable(r) for r in scroll_all(client, name)}


def expected(points) -> dict[str, tuple]:
    """id -> :func:`_comparable` of the points a test wrote itself."""
    return {str(p.id): _comparable(p) for p in points}


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, (payload, dense, sparse) in want.items():
        g_payload, g_dense, g_sparse = got[key]
        assert g_payload == payload, key
        assert np.allclose(g_dense, dense, rtol=1e-5, atol=1e-6), key
        assert (g_sparse is None) == (sparse is None), key
        if sparse is not None:
            assert [i for i, _ in g_sparse] == [i for i, _ in sparse]
            assert np.allclose([v for _, v in g_sparse], [v for _, v in sparse], rtol=1e-6)


@pytest.fixture(scope="module")
def legacy_template(tmp_path_factory) -> Path:
    """A local-mode store of 40 points, written once (local mode syncs every point: 0.8 s)."""
    path = tmp_path_factory.mktemp("legacy") / "qdrant_storage"
    write_store(path, _points(40))
    return path


@pytest.fixture
def legacy(tmp_path, legacy_template) -> Path:
    """The test's own copy of the template, free to tamper with or migrate."""
    return Path(shutil.copytree(legacy_template, tmp_path / "qdrant_storage"))


@contextlib.contextmanager
def embedded(path: Path, points=None):
    """The embedded store the product opens (qc.open_client), optionally filled by hand."""
    with qc.open_client(path=str(path)) as client:
        if points is not None:
            client.create_collection(COLLECTION, vectors_config={
                "text-dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
                sparse_vectors_config={"text-sparse": models.SparseVectorParams()})
            client.upsert(COLLECTION, points, wait=True)
        yield client


def assert_store_holds_the_points(path: Path, name: str = COLLECTION) -> None:
    """The embedded store at ``path`` holds exactly what ``_points(40)`` wrote."""
    with embedded(path) as client:
        assert_same(contents(client, name), expected(_points(40)))


# -- copy_collection ------------------------------------------------------------------------


def test_copy_legacy_to_standin_recreates_config_and_indexes(legacy, standin):
    with LegacyLocalStore(legacy) as source:
        target = QdrantClient(url=standin.url)
        report = copy_collection(source, target, COLLECTION, batch=7)
        assert report.points == 40 and report.created and report.sampled > 10
        assert_same(contents(target), expected(_points(40)))
    c = standin.collections[COLLECTION]
    assert c["params"]["vectors"] == {"text-dense": {"size": DIM, "distance": "Cosine"}}
    assert list(c["params"]["sparse_vectors"]) == ["text-sparse"]
    assert {k: v["data_type"] for k, v in c["payload_schema"].items()} == {f: "keyword" for f in KEYWORD_FIELDS}


def test_round_trip_edge_standin_edge(tmp_path, standin):
    points = _points(40)
    server = QdrantClient(url=standin.url)
    with embedded(tmp_path / "one", points) as first:
        copy_collection(first, server, COLLECTION, batch=16)
    with embedded(tmp_path / "two") as second:
        report = copy_collection(server, second, COLLECTION, target_name="back", batch=9)
        assert report.points == 40 and report.created
        assert_same(contents(second, "back"), expected(points))
        info = second.get_collection("back")
        assert info.config.params.vectors["text-dense"].size == DIM
        assert list(info.config.params.sparse_vectors) == ["text-sparse"]


class _Interrupting:
    """A source whose scroll raises KeyboardInterrupt on call ``after`` (a Ctrl-C mid-copy)."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.calls = inner, after, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def scroll(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.inner.scroll(*args, **kwargs)


def test_an_interrupted_copy_is_finished_by_running_it_again(legacy, standin):
    target = QdrantClient(url=standin.url)
    with LegacyLocalStore(legacy) as source:
        with pytest.raises(KeyboardInterrupt):
            copy_collection(_Interrupting(source, after=3), target, COLLECTION, batch=8)
        assert 0 < len(standin.points(COLLECTION)) < 40
        report = copy_collection(source, target, COLLECTION, batch=8)
    assert report.points == 40 and not report.created
    assert_same(contents(target), expected(_points(40)))


def test_a_target_with_other_points_fails_verification(legacy):
    target = QdrantClient(":memory:")
    with LegacyLocalStore(legacy) as source:
        copy_collection(source, target, COLLECTION)
        target.upsert(COLLECTION, [models.PointStruct(id=10**6, vector={"text-dense": [1.0] * DIM})])
        with pytest.raises(CopyError, match="already holds 41 points, more than the 40 of the source") as err:
            copy_collection(source, target, COLLECTION)
        assert "\n" not in str(err.value)
        target.delete(COLLECTION, points_selector=[0, 3])  # 39 left, one of them not the source's
        with pytest.raises(CopyError, match="holds 41 points after the copy, the source .* gave 40"):
            copy_collection(source, target, COLLECTION)


def test_a_target_with_other_vectors_is_refused_before_writing(legacy):
    target = QdrantClient(":memory:")
    target.create_collection(COLLECTION, vectors_config={"text-dense": models.VectorParams(
        size=DIM + 1, distance=models.Distance.COSINE)})
    with LegacyLocalStore(legacy) as source, pytest.raises(CopyError, match="exists with other vectors"):
        copy_collection(source, target, COLLECTION)
    assert target.count(COLLECTION).count == 0


class _Lossy:
    """A target that changes what it stores: a payload value, or a vector."""

    def __init__(self, inner, what: str) -> None:
        self.inner, self.what = inner, what

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def upsert(self, collection_name, points, **kwargs):
        changed = []
        for p in points:
            if p.payload and p.payload.get("chunk_index") == 1:
                if self.what == "payload":
                    p = models.PointStruct(id=p.id, vector=p.vector, payload={**p.payload, "score": -1})
                else:
                    v = dict(p.vector)
                    v["text-dense"] = [x + 0.5 for x in v["text-dense"]]
                    p = models.PointStruct(id=p.id, vector=v, payload=p.payload)
            changed.append(p)
        return self.inner.upsert(collection_name, changed, **kwargs)


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")  # the wrapped local-mode target
@pytest.mark.parametrize("what, match", [("payload", r"payload differs from the source \(keys 'score'\)"),
                                         ("vector", r"vector 'text-dense' differs from the source")])
def test_verification_finds_a_changed_point(legacy, what, match):
    target = _Lossy(QdrantClient(":memory:"), what)
    with LegacyLocalStore(legacy) as source, pytest.raises(CopyError, match=match):
        copy_collection(source, target, COLLECTION, sample=40)


def test_missing_source_collection(legacy):
    with LegacyLocalStore(legacy) as source, pytest.raises(CopyError, match="no collection 'nope'"):
        copy_collection(source, QdrantClient(":memory:"), "nope")


# -- sgpt-store migrate ---------------------------------------------------------------------


@pytest.fixture
def ingested_legacy(tmp_path, tiny_model_dir) -> tuple[Path, dict]:
    """examples/docs ingested by ingest_paths into qdrant-client local mode (what earlier versions wrote)."""
    from sgpt_qdrant.ingest import ingest_paths

    path = tmp_path / "qdrant_storage"
    client = QdrantClient(path=str(path))
    try:
        summary = ingest_paths([str(DOCS)], store=client, model=str(tiny_model_dir))
        assert summary.ingested == len(list(DOCS.iterdir())) and summary.chunks_written > 0
        want = {str(r.id): (r.payload, r.vector) for r in scroll_all(client, limit=256)}
    finally:
        client.close()
    return path, want


def assert_holds(client, want: dict) -> None:
    got = {str(r.id): (r.payload, r.vector) for r in scroll_all(client, limit=100)}
    assert sorted(got) == sorted(want)
    for key, (payload, vector) in want.items():
        assert got[key][0] == payload
        assert np.allclose(unit(got[key][1]["text-dense"]), unit(vector["text-dense"]), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_migrate_a_store_written_by_ingest(ingested_legacy, tiny_model_dir):
    from sgpt_qdrant.ingest import ingest_paths

    path, want = ingested_legacy
    before = tree_digest(path)
    result = invoke("migrate", "--qdrant-path", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    store, new, backup = migration_paths(path)
    assert summary["status"] == "migrated" and summary["points"] == len(want)
    assert summary["backup"] == str(backup) and not new.exists()
    assert is_edge_store(path) and not legacy_local_store(path)
    assert tree_digest(backup) == before  # the legacy files, untouched
    with embedded(path) as client:
        assert_holds(client, want)
        assert set(client.get_collection(COLLECTION).payload_schema or {}) >= set(KEYWORD_FIELDS)
    summary = ingest_paths([str(DOCS)], store=StoreTarget(str(path)), model=str(tiny_model_dir))
    assert summary.unchanged == len(list(DOCS.iterdir())) and summary.chunks_written == 0 and summary.ingested == 0
    again = invoke("migrate", "--qdrant-path", path)
    assert again.exit_code == 0 and "nothing to migrate" in last_line(again)


def finish_by_a_rerun(legacy: Path, before: dict):
    """Rerun the migration: it succeeds, the legacy files (digest ``before``) are the backup, the new
    folder is gone and the store holds the 40 points. Returns the rerun's result."""
    result = invoke("migrate", "--qdrant-path", legacy)
    assert result.exit_code == 0, result.output
    store, new, backup = migration_paths(legacy)
    assert tree_digest(backup) == before and not new.exists()
    assert_store_holds_the_points(legacy)
    return result


def test_migrate_interrupted_mid_copy_leaves_the_store_and_finishes(legacy, monkeypatch):
    from sgpt_qdrant.ingest import copy as copy_module

    before = tree_digest(legacy)
    original = copy_module.copy_collection

    def interrupted(source, target, name, **kwargs):
        return original(_Interrupting(source, after=3), target, name, **kwargs)

    monkeypatch.setattr(copy_module, "copy_collection", interrupted)
    result = invoke("migrate", "--qdrant-path", legacy, "--batch", "8")
    assert result.exit_code == 130 and "run the same command again" in last_line(result)
    assert legacy_local_store(legacy) and tree_digest(legacy) == before
    store, new, backup = migration_paths(legacy)
    assert new.exists() and not backup.exists()
    monkeypatch.setattr(copy_module, "copy_collection", original)
    finish_by_a_rerun(legacy, before)


@pytest.mark.parametrize("exchange", [True, False])
def test_migrate_crash_during_the_swap_is_finished_by_a_rerun(legacy, monkeypatch, exchange):
    """A crash between the two steps of the swap (exchange + rename, or rename + rename)."""
    before = tree_digest(legacy)
    if not exchange:
        monkeypatch.setattr(store_cli, "_exchange", lambda a, b: False)
    real_rename, calls = os.rename, []

    def crash_on_second_step(a, b):
        calls.append((a, b))
        if len(calls) == (1 if exchange else 2):
            raise KeyboardInterrupt  # the process dies here
        return real_rename(a, b)

    monkeypatch.setattr(store_cli.os, "rename", crash_on_second_step)
    result = invoke("migrate", "--qdrant-path", legacy)
    assert result.exit_code == 130
    monkeypatch.setattr(store_cli.os, "rename", real_rename)
    store, new, backup = migration_paths(legacy)
    if exchange:
        assert not legacy_local_store(legacy) and legacy_local_store(new)  # the new store is already in place
    else:
        assert not legacy.exists() and legacy_local_store(backup)
    assert "finished an interrupted migration" in last_line(finish_by_a_rerun(legacy, before))


def test_migrate_refuses_a_tampered_store_and_runs_nothing(legacy, tmp_path):
    plant(legacy, pickle.dumps(Evil(tmp_path / "PWNED")))
    before = tree_digest(legacy)
    result = invoke("migrate", "--qdrant-path", legacy)
    assert result.exit_code == 2
    line = last_line(result)
    assert line.startswith(f"sgpt-store: error: {storage_file(legacy)} (row 1): refusing to load a pickled posix.system")
    assert not (tmp_path / "PWNED").exists()
    assert tree_digest(legacy) == before and not migration_paths(legacy)[2].exists()


def test_migrate_refuses_when_the_backup_name_is_taken(legacy):
    migration_paths(legacy)[2].mkdir()
    result = invoke("migrate", "--qdrant-path", legacy)
    assert result.exit_code == 2 and "local-mode-backup exists" in last_line(result)
    assert legacy_local_store(legacy)


def test_migrate_without_a_store(tmp_path):
    result = invoke("migrate", "--qdrant-path", tmp_path / "none")
    assert result.exit_code == 2 and "no store here" in last_line(result)


# -- sgpt-store copy ------------------------------------------------------------------------


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_copy_command_edge_to_server_and_back(tmp_path, standin):
    with embedded(tmp_path / "one", _points(40)):
        pass
    out = invoke("copy", "--from-path", tmp_path / "one", "--to-url", standin.url, "--json")
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["points"] == 40 and summary["created"] and summary["target"] == standin.url
    back = invoke("copy", "--from-url", standin.url, "--to-path", tmp_path / "two", "--to-collection", "copy")
    assert back.exit_code == 0, back.output
    assert "copied 40 points of 'documents'" in last_line(back)
    assert_store_holds_the_points(tmp_path / "two", "copy")


def test_copy_command_reads_a_legacy_store_safely(legacy, tmp_path, standin):
    out = invoke("copy", "--from-path", legacy, "--to-url", standin.url)
    assert out.exit_code == 0, out.output
    assert_same(contents(QdrantClient(url=standin.url)), expected(_points(40)))
    plant(legacy, pickle.dumps(Evil(tmp_path / "PWNED")))
    out = invoke("copy", "--from-path", legacy, "--to-path", tmp_path / "edge")
    assert out.exit_code == 2 and "refusing to load a pickled posix.system" in last_line(out)
    assert not (tmp_path / "PWNED").exists()


def test_copy_command_api_key_from_env(legacy, standin):
    standin.api_key = "s3cret-key"
    out = invoke("copy", "--from-path", legacy, "--to-url", standin.url, env={qc.API_KEY_ENV: "s3cret-key\r\n"})
    assert out.exit_code == 0, out.output
    out = invoke("copy", "--from-path", legacy, "--to-url", standin.url, env={qc.API_KEY_ENV: "wrong-key"})
    assert out.exit_code == 2 and "HTTP 401" in last_line(out) and "wrong-key" not in out.output


@pytest.mark.parametrize("args, match", [
    (["--to-path", "x"], "exactly one of --from-path and --from-url"),
    (["--from-path", "a", "--from-url", "http://h:6333", "--to-path", "x"], "exactly one of --from-path"),
    (["--from-path", "{legacy}"], "exactly one of --to-path and --to-url"),
    (["--from-path", "{legacy}", "--to-path", "{legacy}"], "the same store"),
    (["--from-path", "{tmp}/missing", "--to-path", "{tmp}/x"], "no store here"),
    (["--from-path", "{tmp}/e", "--to-path", "{legacy}"], "sgpt-store migrate --qdrant-path"),
    (["--from-path", "{legacy}", "--to-path", "{tmp}/x", "--collection", "nope"], "no collection 'nope'"),
])
def test_copy_command_errors_are_one_line(legacy, tmp_path, args, match):
    with embedded(tmp_path / "e"):  # an empty Edge store
        pass
    args = [a.format(legacy=legacy, tmp=tmp_path) for a in args]
    out = invoke("copy", *args)
    assert out.exit_code == 2, out.output
    assert match in last_line(out)


def test_copy_command_ctrl_c_is_130(legacy, tmp_path, monkeypatch):
    from sgpt_qdrant.ingest import copy as copy_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(copy_module, "copy_collection", interrupted)
    out = invoke("copy", "--from-path", legacy, "--to-path", tmp_path / "x")
    assert out.exit_code == 130 and "run the same command again" in last_line(out)


def test_help_imports_neither_qdrant_client_nor_torch():
    code = ("import sys\nfrom sgpt_qdrant.ingest.store_cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'qdrant_client', 'numpy', 'llama_index') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


# -- every command that opens a store refuses a legacy one without running it -------------------


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.parametrize("command", ["sgpt-ingest", "ingest_paths", "query_qdrant", "query_llamaindex",
                                     "sgpt-store copy", "sgpt-store migrate"])
def test_a_tampered_legacy_store_runs_nothing_in_any_command(legacy, tmp_path, tiny_model_dir, command):
    """The issue's reproduction through each command: one line, no PWNED, the folder untouched."""
    plant(legacy, pickle.dumps(Evil(tmp_path / "PWNED")))
    before = tree_digest(legacy)
    migrate_hint = f"sgpt-store migrate --qdrant-path {legacy}"
    if command == "sgpt-ingest":
        from sgpt_qdrant.ingest.cli import cli as ingest_cli

        result = CliRunner().invoke(ingest_cli, [str(DOCS / "bees.rst"), "--qdrant-path", str(legacy), "--dry-run",
                                                  "--model", str(tiny_model_dir)])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and migrate_hint in result.stderr
    elif command == "ingest_paths":
        from sgpt_qdrant.ingest import IngestError, StoreError, ingest_paths

        with pytest.raises((IngestError, StoreError), match=migrate_hint):
            ingest_paths([str(DOCS)], store=StoreTarget(str(legacy)), model=str(tiny_model_dir))
    elif command.startswith("query_"):
        from test_examples import _example

        result = CliRunner().invoke(_example(command).main, ["bees", "--qdrant-path", str(legacy),
                                                              "--model", str(tiny_model_dir)])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and migrate_hint in result.stderr
    elif command == "sgpt-store copy":
        result = invoke("copy", "--from-path", legacy, "--to-path", tmp_path / "edge")
        assert result.exit_code == 2 and "refusing to load a pickled posix.system" in last_line(result)
    else:
        result = invoke("migrate", "--qdrant-path", legacy)
        assert result.exit_code == 2 and "refusing to load a pickled posix.system" in last_line(result)
    assert not (tmp_path / "PWNED").exists()
    assert tree_digest(legacy) == before


@pytest.mark.slow
def test_migrate_in_a_read_only_folder_is_one_line(legacy):
    from test_legacy_store import _without_root_powers

    prefix = _without_root_powers()
    before = tree_digest(legacy)
    legacy.parent.chmod(0o555)
    try:
        out = subprocess.run([*prefix, str(Path(sys.executable).parent / "sgpt-store"), "migrate", "--qdrant-path",
                              str(legacy)], capture_output=True, text=True, timeout=120)
    finally:
        legacy.parent.chmod(0o755)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (f"sgpt-store: error: {legacy.parent}: not writable; the Edge store is written next "
                                  f"to {legacy.name} before it replaces it: copy the store somewhere writable, or use "
                                  "sgpt-store copy --to-path")
    assert tree_digest(legacy) == before
