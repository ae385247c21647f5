"""Reading qdrant-client local-mode stores without running their pickles (ingest/legacy_local.py).

The reference is qdrant-client itself: it writes the stores, its own reader shows what they hold,
and it *does* run a planted pickle (so the tamper test's pickle is live, not a dud)."""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from sgpt_qdrant.ingest.client import legacy_local_store
from sgpt_qdrant.ingest.legacy_local import LegacyLocalStore, LegacyStoreError, safe_loads

COLLECTION = "documents"
DIM = 8


def _vector(i: int) -> list[float]:
    return [float((i * 7 + k) % 11) - 5.0 + 0.25 * k for k in range(DIM)]


def _points(n: int = 30) -> list[models.PointStruct]:
    points = []
    for i in range(n):
        pid = i if i % 3 == 0 else str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}"))
        vector = {"text-dense": _vector(i)}
        if i % 2:
            vector["text-sparse"] = models.SparseVector(indices=[i, i + 5], values=[0.5, 1.5 + i])
        payload = None if i == 4 else {
            "doc_id": f"doc{i // 4}.md", "chunk_index": i % 4, "score": i / 3, "flag": i % 2 == 0,
            "tags": ["a", i, None, {"deep": [1.5, "x"]}], "file_name": f"doc{i // 4}.md",
        }
        points.append(models.PointStruct(id=pid, vector=vector, payload=payload))
    return points


def write_store(path: Path, points: list[models.PointStruct]) -> None:
    """A local-mode store as qdrant-client writes it."""
    client = QdrantClient(path=str(path))
    try:
        client.create_collection(COLLECTION, vectors_config={
            "text-dense": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
            sparse_vectors_config={"text-sparse": models.SparseVectorParams()})
        client.upsert(COLLECTION, points)
    finally:
        client.close()


def storage_file(path: Path) -> Path:
    return path / "collection" / COLLECTION / "storage.sqlite"


class Evil:
    """The issue's reproduction: a pickle whose loading runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, blob: bytes, *, key: bool = False) -> None:
    """Replace the first row's point (or its key) with ``blob``."""
    db = sqlite3.connect(storage_file(path))
    with db:
        rowid = db.execute("SELECT min(rowid) FROM points").fetchone()[0]
        if key:
            db.execute("UPDATE points SET id = ? WHERE rowid = ?", (base64.b64encode(blob).decode(), rowid))
        else:
            db.execute("UPDATE points SET point = ? WHERE rowid = ?", (sqlite3.Binary(blob), rowid))
    db.close()


def read_all(store: LegacyLocalStore, limit: int = 7) -> list[models.Record]:
    records, offset = [], None
    while True:
        page, offset = store.scroll(COLLECTION, limit=limit, offset=offset, with_payload=True, with_vectors=True)
        records += page
        if offset is None:
            return records


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[int, Path]:
    """Stores of 30 and 150 points, written once (local mode syncs every point) and copied per test."""
    out = {}
    for n in (30, 150):
        out[n] = tmp_path_factory.mktemp("legacy") / f"store{n}"
        write_store(out[n], _points(n))
    return out


@pytest.fixture
def store(tmp_path, templates) -> Path:
    return Path(shutil.copytree(templates[30], tmp_path / "qdrant_storage"))


def test_reader_returns_what_was_written(store):
    written = {str(p.id): p for p in _points()}
    with LegacyLocalStore(store) as legacy:
        assert legacy.collection_names() == [COLLECTION]
        params = legacy.get_collection(COLLECTION).config.params
        assert params.vectors["text-dense"].size == DIM
        assert params.vectors["text-dense"].distance == models.Distance.COSINE
        assert list(params.sparse_vectors) == ["text-sparse"]
        assert legacy.count(COLLECTION).count == len(written)
        records = read_all(legacy)
    assert sorted(str(r.id) for r in records) == sorted(written)
    for r in records:
        want = written[str(r.id)]
        assert type(r.id) is type(want.id)
        assert r.payload == (want.payload or {})
        assert r.vector["text-dense"] == want.vector["text-dense"]  # the raw floats local mode pickled
        if "text-sparse" in want.vector:
            assert sorted(zip(r.vector["text-sparse"].indices, r.vector["text-sparse"].values)) == sorted(
                zip(want.vector["text-sparse"].indices, want.vector["text-sparse"].values))
        else:
            assert "text-sparse" not in r.vector


def test_reader_agrees_with_qdrant_client(store):
    client = QdrantClient(path=str(store))
    try:
        ref, _ = client.scroll(COLLECTION, limit=1000, with_payload=True)
    finally:
        client.close()
    with LegacyLocalStore(store) as legacy:
        got = read_all(legacy, limit=4)
        retrieved = legacy.retrieve(COLLECTION, [ref[0].id, ref[-1].id, 10**9], with_payload=True)
    assert {str(r.id): r.payload for r in got} == {str(r.id): r.payload for r in ref}
    assert [str(r.id) for r in retrieved] == [str(ref[0].id), str(ref[-1].id)]


def test_the_latest_of_several_rows_wins_as_in_qdrant_client(store):
    """Older versions left a row per UUID spelling; the highest rowid is the point's latest write."""
    target = str(uuid.uuid5(uuid.NAMESPACE_URL, "p1"))
    newer = models.PointStruct(id=target.upper(), vector={"text-dense": _vector(99)}, payload={"doc_id": "newer"})
    db = sqlite3.connect(storage_file(store))
    with db:
        db.execute("INSERT INTO points VALUES (?, ?)",
                   (base64.b64encode(pickle.dumps(target.upper(), protocol=4)).decode(), pickle.dumps(newer)))
    db.close()
    with LegacyLocalStore(store) as legacy:
        assert legacy.count(COLLECTION).count == 30
        (got,) = legacy.retrieve(COLLECTION, [target], with_payload=True, with_vectors=True)
        assert got.id == target and got.payload == {"doc_id": "newer"}
        assert {str(r.id) for r in read_all(legacy)} == {str(p.id) for p in _points()}
    with pytest.warns(UserWarning, match="Removed 1 outdated"):
        client = QdrantClient(path=str(store))
    try:
        (ref,) = client.retrieve(COLLECTION, [target], with_payload=True)
        assert ref.payload == got.payload
    finally:
        client.close()


def test_tampered_row_is_refused_and_never_run(store, tmp_path):
    """The issue's reproduction: qdrant-client runs the planted pickle; the reader refuses it."""
    plant(store, pickle.dumps(Evil(tmp_path / "PWNED")))
    # the reference: opening a copy with qdrant-client runs it (then fails on the int it returned)
    shutil.copytree(store, tmp_path / "copy")
    with pytest.raises(AttributeError):
        QdrantClient(path=str(tmp_path / "copy"))
    assert (tmp_path / "PWNED").exists()
    (tmp_path / "PWNED").unlink()

    with LegacyLocalStore(store) as legacy:
        with pytest.raises(LegacyStoreError) as err:
            read_all(legacy)
    message = one_line(err.value)
    assert message.startswith(f"{storage_file(store)} (row 1): refusing to load a pickled posix.system")
    assert not (tmp_path / "PWNED").exists()


def test_tampered_key_is_refused_when_opened(store, tmp_path):
    plant(store, pickle.dumps(Evil(tmp_path / "PWNED")), key=True)
    with LegacyLocalStore(store) as legacy:
        with pytest.raises(LegacyStoreError, match=r"refusing to load a pickled posix\.system") as err:
            legacy.count(COLLECTION)
    assert str(storage_file(store)) in one_line(err.value)
    assert not (tmp_path / "PWNED").exists()


class _Builtin:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("blob, refused", ids=lambda v: v if isinstance(v, str) else "", argvalues=[
    (pickle.dumps(_Builtin(eval, "1+1")), "builtins.eval"),
    (pickle.dumps(_Builtin(getattr, int, "real")), "builtins.getattr"),
    (pickle.dumps(_Builtin(subprocess.call, ["true"])), "subprocess.call"),
    (pickle.dumps(_Builtin(sys.exit, 3)), "sys.exit"),
    (pickle.dumps(_Builtin(uuid.UUID, "12345678123456781234567812345678")), "uuid.UUID"),
])
def test_anything_but_point_types_is_refused(store, blob, refused):
    plant(store, blob)
    with LegacyLocalStore(store) as legacy, pytest.raises(LegacyStoreError) as err:
        read_all(legacy)
    assert f"refusing to load a pickled {refused}:" in one_line(err.value)


def test_allowed_class_called_with_arguments_is_not_a_point(store):
    """PointStruct is admitted only as a record of its state: a pickle that calls it is refused."""
    blob = (b"\x80\x04\x8c\x20qdrant_client.http.models.models\x8c\x0bPointStruct\x93"
            b"\x8c\x02id\x85R.")
    plant(store, blob)
    with LegacyLocalStore(store) as legacy, pytest.raises(LegacyStoreError, match="not a pickled qdrant-client point"):
        read_all(legacy)


def test_safe_loads_reads_a_point_pickle_of_older_protocols():
    point = models.PointStruct(id=5, vector=[1.0, 2.0], payload={"a": {"b"} and 1})
    for protocol in (2, 3, 4, 5):
        got = safe_loads(pickle.dumps(point, protocol=protocol), "x")
        assert got.fields["id"] == 5 and got.fields["vector"] == [1.0, 2.0] and got.fields["payload"] == {"a": 1}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty-table"])
def test_damaged_sqlite_is_one_line_naming_the_file(tmp_path, templates, damage):
    path = Path(shutil.copytree(templates[150], tmp_path / "s"))
    file = storage_file(path)
    if damage == "garbage":
        file.write_bytes(b"not a database, just bytes " * 500)
    elif damage == "truncated":
        data = file.read_bytes()
        file.write_bytes(data[: len(data) // 3])
    else:
        db = sqlite3.connect(file)
        db.execute("DROP TABLE points")
        db.commit()
        db.close()
    with pytest.raises(LegacyStoreError) as err:
        with LegacyLocalStore(path) as legacy:
            read_all(legacy, limit=50)
    assert one_line(err.value).startswith(str(file))


@pytest.mark.parametrize("meta, match", ids=["truncated", "not-an-object", "invalid", "escaping-name"], argvalues=[
    ('{"collections": {"documents": {"vectors": {"text-dense": {"size": 8, "distance"', "cannot be read as JSON"),
    ('[1, 2]', 'has no "collections" object'),
    ('{"collections": {"documents": {"vectors": {"v": {"size": "big", "distance": "Cosine"}}}}}',
     "invalid configuration"),
    ('{"collections": {"../../outside": {"vectors": {}}}}', "points outside the store folder"),
])
def test_bad_meta_json_is_one_line_naming_it(store, meta, match):
    (store / "meta.json").write_text(meta)
    assert legacy_local_store(store)  # still recognised, so it is refused rather than overwritten
    with pytest.raises(LegacyStoreError, match=match) as err:
        with LegacyLocalStore(store) as legacy:
            for name in legacy.collection_names():
                legacy.count(name)
    assert one_line(err.value).startswith(str(store / "meta.json"))


def test_a_store_in_use_by_qdrant_client_is_refused(store):
    client = QdrantClient(path=str(store))
    try:
        with pytest.raises(LegacyStoreError, match="in use by another process") as err:
            LegacyLocalStore(store)
        assert one_line(err.value).startswith(str(store))
    finally:
        client.close()
    LegacyLocalStore(store).close()  # free again once qdrant-client let go


READ_ONLY_SCRIPT = """
import sys
from sgpt_qdrant.ingest.legacy_local import LegacyLocalStore, LegacyStoreError
try:
    with LegacyLocalStore(sys.argv[1]) as legacy:
        points, _ = legacy.scroll("documents", limit=1000, with_vectors=True)
        print("read", len(points))
except LegacyStoreError as exc:
    print("error", exc)
"""


def _without_root_powers() -> list[str]:
    """A command prefix under which file permissions apply (root bypasses them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


@pytest.mark.slow
def test_read_only_folder(store, tmp_path):
    """A clean store in a read-only folder is read; one with a write pending in its WAL is one line."""
    prefix = _without_root_powers()
    folder = storage_file(store).parent
    run = lambda: subprocess.run([*prefix, sys.executable, "-c", READ_ONLY_SCRIPT, str(store)], capture_output=True,
                                 text=True, timeout=120)
    for p in (store, folder):
        p.chmod(0o555)
    try:
        out = run()
        assert out.stdout.strip() == "read 30", out.stderr
        for p in (store, folder):
            p.chmod(0o755)
        wal = sqlite3.connect(storage_file(store))  # a writer in WAL mode that has not checkpointed
        wal.execute("PRAGMA journal_mode=WAL")
        wal.execute("PRAGMA wal_autocheckpoint=0")
        with wal:
            wal.execute("UPDATE points SET point = point WHERE rowid = 1")
        shutil.copy(f"{storage_file(store)}-wal", tmp_path / "keep-wal")
        wal.close()  # closing checkpoints and removes the -wal: put it back as a crash leaves it
        shutil.copy(tmp_path / "keep-wal", f"{storage_file(store)}-wal")
        for p in (store, folder):
            p.chmod(0o555)
        out = run()
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error {storage_file(store)}: "), out
        assert "read-only" in lines[0]
    finally:
        for p in (store, folder):
            p.chmod(0o755)


@pytest.mark.parametrize("fields, match", [
    (dict(vector={"text-dense": "abc"}, payload={}), "a vector of type str"),
    (dict(vector={"text-dense": models.SparseVector.model_construct(indices=["x"], values=[1.0])}, payload={}),
     "a vector of type _Sparse"),
    (dict(vector={"text-dense": [1.0] * DIM}, payload={"blob": b"\x00"}), "a payload value of type bytes"),
])
def test_point_values_that_qdrant_cannot_hold_are_one_line(store, fields, match):
    """Admitted classes with wrong contents (a tampered or foreign row): named, not passed on."""
    from qdrant_client._pydantic_compat import construct

    first = _points()[0]
    plant(store, pickle.dumps(construct(models.PointStruct, id=first.id, **fields)))
    with LegacyLocalStore(store) as legacy, pytest.raises(LegacyStoreError, match=match) as err:
        read_all(legacy)
    assert one_line(err.value).startswith(f"{storage_file(store)} (row 1): point {first.id}:")
