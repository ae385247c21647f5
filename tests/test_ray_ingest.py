"""``ingest.distributed`` on a local Ray (2 CPUs, no dashboard, one start per test session).

The reference is always the in-process path on the same files: the Ray path must store the same
points (ids, payloads, vectors to 1e-6) and report the same Summary. Skipped when Ray (the
``[ray]`` extra) is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from qdrant_client import QdrantClient  # noqa: E402

from sgpt_qdrant import checkpoint as ckpt  # noqa: E402
from sgpt_qdrant.ingest import distributed, store  # noqa: E402
from sgpt_qdrant.ingest.collection_config import CollectionSettings, ensure_collection  # noqa: E402
from sgpt_qdrant.ingest.read import find_files  # noqa: E402
from sgpt_qdrant.ingest.sync import sync  # noqa: E402
from sgpt_qdrant.ingest.upload import Uploader  # noqa: E402

pytestmark = pytest.mark.slow
COLLECTION = "documents"
TIMING = {"seconds", "embed_seconds"}


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the whole session; its address lets a second driver process join it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def checkpoint(tiny_model_dir):
    return ckpt.load(str(tiny_model_dir))


def make_tree(root: Path) -> list[Path]:
    """Two input folders: text of very different sizes, a binary, an empty file, Latin-1, an id given twice."""
    one, two = root / "one", root / "two"
    (one / "sub").mkdir(parents=True)
    two.mkdir()
    (one / "guide.md").write_text("# Guide\n\n" + " ".join(f"Bed {i} gets compost in spring." for i in range(60)))
    (one / "sub" / "notes.txt").write_text("\n".join(f"Note {i}: the bridge is painted." for i in range(25)))
    (one / "sub" / "page.html").write_text("<html><body><h1>Bridge</h1><p>Finished in 1821.</p></body></html>")
    (one / "tiny.txt").write_text("One line.")
    (one / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (one / "empty.txt").write_text("")
    (one / "latin1.txt").write_bytes("Café crème brûlée is a dessert.".encode("latin-1"))
    (one / "same.txt").write_text("The first folder's copy wins.")
    (two / "same.txt").write_text("The second folder's copy is refused.")
    (two / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # id given twice, but skipped: no conflict
    (two / "other.txt").write_text("Another file. " * 40)
    return [one, two]


def run(path: Path, inputs, checkpoint, *, use_ray: bool, prune: bool = False, batch_size: int = 8,
        writer_wrapper=None, server=None, state=None, **ray_kwargs):
    """The CLI's wiring: open the store, read the state, one Uploader, then sync or ray_sync."""
    dim, model = checkpoint.dimension, str(checkpoint.source)
    with store.open_client(str(path)) as client:
        ensure_collection(client, COLLECTION, dim, CollectionSettings(), vector_name=store.VECTOR_NAME)
        state = store.read_state(client, COLLECTION) if state is None else state
        files = list(find_files(inputs))
        messages: list[str] = []
        uploader = Uploader(client, COLLECTION, barrier_deletes=False)
        writer = writer_wrapper(uploader) if writer_wrapper else uploader
        common = dict(tokenizer=checkpoint.tokenizer, max_tokens=checkpoint.max_seq_length, model=model,
                      writer=writer, batch_size=batch_size, prune=prune, on_message=messages.append)
        if use_ray:
            summary = distributed.ray_sync(files, state, server=server, **common, **ray_kwargs)
        else:
            from sgpt_qdrant import Encoder

            summary = sync(files, state, encode=Encoder(checkpoint, device="cpu").encode, **common)
    return summary, sorted(messages)


def stored(path: Path) -> dict:
    with closing(QdrantClient(path=str(path))) as client:
        points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, np.asarray(p.vector[store.VECTOR_NAME])) for p in points}


def assert_same_points(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key, (payload, vector) in a.items():
        assert b[key][0] == payload, key
        np.testing.assert_allclose(b[key][1], vector, rtol=0, atol=1e-6)


def comparable(summary) -> dict:
    return {k: v for k, v in summary.to_dict().items() if k not in TIMING}


def test_ray_and_in_process_store_the_same_points_first_run_and_incremental(tmp_path, ray_address, checkpoint):
    inputs = make_tree(tmp_path / "docs")
    local, distributed_store = tmp_path / "local", tmp_path / "ray"
    ref, ref_msgs = run(local, inputs, checkpoint, use_ray=False)
    got, got_msgs = run(distributed_store, inputs, checkpoint, use_ray=True)
    # hand count: 11 files; ingested guide, notes, page, tiny, latin1, one/same, other; skipped 2 png + empty;
    # failed: two/same.txt (its id is one/same.txt's)
    assert (ref.files_seen, ref.ingested, ref.skipped, ref.failed) == (11, 7, 3, 1)
    assert comparable(got) == comparable(ref)
    assert got_msgs == ref_msgs and any("two/same.txt" in m for m in got_msgs)
    assert_same_points(stored(local), stored(distributed_store))

    # edit one file (shrinks), delete one, add one: incremental and --prune through both paths
    (inputs[0] / "guide.md").write_text("# Guide\n\nOnly tomatoes now.")
    (inputs[0] / "sub" / "notes.txt").unlink()
    (inputs[1] / "new.md").write_text("# New\n\n" + "Fresh text here. " * 30)
    ref, _ = run(local, inputs, checkpoint, use_ray=False, prune=True)
    got, _ = run(distributed_store, inputs, checkpoint, use_ray=True, prune=True)
    assert (ref.ingested, ref.documents_deleted) == (2, 1) and ref.chunks_deleted > 0
    assert comparable(got) == comparable(ref)
    assert_same_points(stored(local), stored(distributed_store))


def _actor_pids() -> set[int]:
    """Embedding actor processes of this session's Ray (descendants of this process)."""
    me, pids = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"_Embedder" not in (entry / "cmdline").read_bytes():
                continue
            pid = int(entry.name)
            while pid > 1:
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if pid == me:
                    pids.add(int(entry.name))
                    break
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_an_embedding_worker_killed_mid_run_is_retried_and_the_result_unchanged(tmp_path, ray_address, checkpoint):
    inputs = make_tree(tmp_path / "docs")
    run(tmp_path / "local", inputs, checkpoint, use_ray=False, batch_size=2)
    killed: list[int] = []

    class KillOnFirstWrite:
        """The driver's first write SIGKILLs the embedding actor, then waits until Ray has replaced it."""

        def __init__(self, inner):
            self.inner = inner

        def upsert(self, points):
            if not killed:
                (pid,) = _actor_pids()
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                deadline = time.monotonic() + 120
                while not (_actor_pids() - {pid}):  # a new process: the run was not over yet
                    assert time.monotonic() < deadline, "the killed actor was not restarted"
                    time.sleep(0.2)
            self.inner.upsert(points)

        def delete(self, selector):
            self.inner.delete(selector)

        def close(self):
            self.inner.close()

    summary, _ = run(tmp_path / "ray", inputs, checkpoint, use_ray=True, batch_size=2, writer_wrapper=KillOnFirstWrite)
    assert killed and summary.failed == 1 and summary.ingested == 7
    assert_same_points(stored(tmp_path / "local"), stored(tmp_path / "ray"))


DRIVER = textwrap.dedent("""
    import sys, time, ray
    sys.path.insert(0, {tests!r})
    from test_ray_ingest import run, make_tree
    from sgpt_qdrant import checkpoint as ckpt
    from pathlib import Path

    class PauseAfterSecondWrite:
        def __init__(self, inner):
            self.inner, self.n = inner, 0
        def upsert(self, points):
            self.inner.upsert(points)
            self.n += 1
            print(f"wrote batch {{self.n}}", flush=True)
            if self.n == 2:
                time.sleep(120)
        def delete(self, selector):
            self.inner.delete(selector)
        def close(self):
            self.inner.close()

    ray.init(address={address!r}, logging_level="WARNING")
    inputs = [Path(p) for p in {inputs!r}]
    run(Path({store!r}), inputs, ckpt.load({model!r}), use_ray=True, batch_size=2, prune=True,
        writer_wrapper=PauseAfterSecondWrite)
""")


def test_driver_killed_then_rerun_equals_a_clean_run(tmp_path, ray_address, checkpoint):
    inputs = make_tree(tmp_path / "docs")
    store_path, clean = tmp_path / "ray", tmp_path / "clean"
    run(store_path, inputs, checkpoint, use_ray=True)  # v1 stored
    (inputs[0] / "guide.md").write_text("# Guide\n\n" + " ".join(f"Bed {i} gets sand." for i in range(30)))
    (inputs[0] / "tiny.txt").unlink()
    (inputs[1] / "new.md").write_text("# New\n\n" + "Fresh text here. " * 30)
    run(clean, inputs, checkpoint, use_ray=False, prune=True)  # what v2 looks like from scratch

    script = DRIVER.format(tests=str(Path(__file__).parent), address=ray_address, inputs=[str(p) for p in inputs],
                           store=str(store_path), model=str(checkpoint.source))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "wrote batch 2" in line:
                break
        else:
            raise AssertionError(proc.stderr.read())
        proc.kill()  # SIGKILL: no cleanup in the driver
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert stored(store_path).keys() != stored(clean).keys()  # half done

    summary, _ = run(store_path, inputs, checkpoint, use_ray=True, prune=True)
    assert summary.failed == 1 and summary.documents_deleted == 1
    assert_same_points(stored(clean), stored(store_path))


def test_workers_write_to_a_server_through_the_datasink_with_retries(tmp_path, ray_address, checkpoint):
    from test_upload_standin import StandIn

    inputs = make_tree(tmp_path / "docs")
    ref, ref_msgs = run(tmp_path / "local", inputs, checkpoint, use_ray=False)
    server = StandIn().start()
    try:
        with closing(QdrantClient(url=server.url, check_compatibility=False)) as client:
            ensure_collection(client, COLLECTION, checkpoint.dimension, CollectionSettings(),
                              vector_name=store.VECTOR_NAME)
        server.fail("upsert", 2, "503")  # the workers' Uploader retries these
        target = distributed.ServerTarget(url=server.url, collection=COLLECTION, upsert_batch=4)
        with closing(QdrantClient(url=server.url, check_compatibility=False)) as client:
            uploader = Uploader(client, COLLECTION, barrier_deletes=False)
            messages: list[str] = []
            summary = distributed.ray_sync(
                list(find_files(inputs)), {}, tokenizer=checkpoint.tokenizer, max_tokens=checkpoint.max_seq_length,
                model=str(checkpoint.source), writer=uploader, batch_size=8, server=target,
                on_message=messages.append)
        points = {str(pid): (p["payload"], np.asarray(p["vector"][store.VECTOR_NAME]))
                  for pid, p in server.points(COLLECTION).items()}
        upserts = [e for e in server.log if e["path"].endswith("/points") and e["method"] == "PUT"]
    finally:
        server.stop()
    assert comparable(summary) == comparable(ref) and sorted(messages) == ref_msgs
    assert len(upserts) >= 2 + summary.chunks_written // 4  # the two refused ones were sent again
    local = {k: (json.loads(json.dumps(p)), v) for k, (p, v) in stored(tmp_path / "local").items()}
    assert_same_points(local, points)
