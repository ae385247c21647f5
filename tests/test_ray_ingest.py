"""``ingest.distributed`` on a local Ray (2 CPUs, no dashboard, one start per test session).

The reference is always the in-process path on the same files: the Ray path must store the same
points (ids, payloads, vectors to 1e-6) and report the same Summary. Skipped when Ray (the
``[ray]`` extra) is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from qdrant_client import QdrantClient  # noqa: E402

from sgpt_qdrant.ingest.edge import EdgeClient
from sgpt_qdrant.ingest import schema  # noqa: E402
from sgpt_qdrant.ingest.distributed import RayOptions  # noqa: E402
from sgpt_qdrant.ingest.client import StoreTarget  # noqa: E402
from sgpt_qdrant.ingest.pipeline import IngestOptions, ingest_paths  # noqa: E402

import paused_ingest  # noqa: E402 - tests/: sgpt-ingest pausing after each batch

pytestmark = pytest.mark.slow
COLLECTION = "documents"
TIMING = {"seconds", "embed_seconds", "model_load_seconds"}


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the whole session; its address lets a second driver process join it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def make_tree(root: Path) -> list[Path]:
    """Two input folders: text of very different sizes, a binary, an empty file, Latin-1, an id given twice."""
    one, two = root / "one" / "docs", root / "two" / "docs"  # two folders of one name: ids docs/...
    (one / "sub").mkdir(parents=True)
    two.mkdir(parents=True)
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
    (two / os.fsdecode(b"caf\xff.txt")).write_text("A file whose name is not UTF-8.")  # ids from the name's bytes
    return [one, two]


def run(store_path: Path | None, inputs, model_dir, *, use_ray: bool, prune: bool = False, batch_size: int = 8,
        writer_hook=None, url: str | None = None):
    """``ingest_paths`` in-process or on the session's Ray; the messages without model-loading notes."""
    messages: list[str] = []
    options = IngestOptions(batch_size=batch_size, prune=prune, device="cpu", ray=RayOptions() if use_ray else None)
    summary = ingest_paths(inputs, store=StoreTarget(store_path, url), model=str(model_dir), options=options,
                           on_message=messages.append, writer_hook=writer_hook)
    return summary, sorted(m for m in messages if not m.startswith(("loading the model", "model loaded", "ray:")))


def stored(path: Path) -> dict:
    with closing(EdgeClient(path)) as client:
        points, _ = client.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, np.asarray(p.vector[schema.VECTOR_NAME])) for p in points}


def assert_same_points(a: dict, b: dict) -> None:
    """Same ids, payloads and directions (a cosine store keeps unit vectors, as Qdrant Edge and a real
    server do; the stand-in server keeps what it was sent)."""
    assert a.keys() == b.keys() and a
    for key, (payload, vector) in a.items():
        assert b[key][0] == payload, key
        np.testing.assert_allclose(b[key][1] / np.linalg.norm(b[key][1]), vector / np.linalg.norm(vector),
                                   rtol=0, atol=1e-6)


def comparable(summary) -> dict:
    return {k: v for k, v in summary.to_dict().items() if k not in TIMING}


def test_ray_and_in_process_store_the_same_points_first_run_and_incremental(tmp_path, ray_address,
                                                                            tiny_model_dir):
    inputs = make_tree(tmp_path / "docs")
    local, distributed_store = tmp_path / "local", tmp_path / "ray"
    ref, ref_msgs = run(local, inputs, tiny_model_dir, use_ray=False)
    got, got_msgs = run(distributed_store, inputs, tiny_model_dir, use_ray=True)
    # hand count: 12 files; ingested guide, notes, page, tiny, latin1, one/same, other, caf\xff; skipped 2 png + empty;
    # failed: two/docs/same.txt (its id docs/same.txt is one/docs/same.txt's)
    assert (ref.files_seen, ref.ingested, ref.skipped, ref.failed) == (12, 8, 3, 1)
    assert comparable(got) == comparable(ref)
    assert got_msgs == ref_msgs and any("two/docs/same.txt" in m for m in got_msgs)
    assert_same_points(stored(local), stored(distributed_store))

    # edit one file (shrinks), delete one, add one: incremental and --prune through both paths
    (inputs[0] / "guide.md").write_text("# Guide\n\nOnly tomatoes now.")
    (inputs[0] / "sub" / "notes.txt").unlink()
    (inputs[1] / "new.md").write_text("# New\n\n" + "Fresh text here. " * 30)
    ref, _ = run(local, inputs, tiny_model_dir, use_ray=False, prune=True)
    got, _ = run(distributed_store, inputs, tiny_model_dir, use_ray=True, prune=True)
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


def test_an_embedding_worker_killed_mid_run_is_retried_and_the_result_unchanged(tmp_path, ray_address,
                                                                                 tiny_model_dir):
    inputs = make_tree(tmp_path / "docs")
    run(tmp_path / "local", inputs, tiny_model_dir, use_ray=False, batch_size=2)
    killed: list[int] = []

    class KillOnFirstWrite:
        """The driver's first write SIGKILLs the embedding actor, then waits until Ray has replaced it."""

        def __init__(self, inner):
            self.inner = inner

        def upsert(self, points):
            if not killed:
                before = _actor_pids()
                for pid in before:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                deadline = time.monotonic() + 120
                while not (_actor_pids() - before):  # a new process: the run was not over yet
                    assert time.monotonic() < deadline, "the killed actor was not restarted"
                    time.sleep(0.2)
            self.inner.upsert(points)

        def delete(self, selector):
            self.inner.delete(selector)

        def close(self):
            self.inner.close()

    summary, _ = run(tmp_path / "ray", inputs, tiny_model_dir, use_ray=True, batch_size=2,
                     writer_hook=KillOnFirstWrite)
    assert killed and summary.failed == 1 and summary.ingested == 8
    assert_same_points(stored(tmp_path / "local"), stored(tmp_path / "ray"))


def test_driver_killed_then_rerun_equals_a_clean_run(tmp_path, ray_address, tiny_model_dir):
    """``sgpt-ingest --ray=ADDRESS`` joins the session's cluster as a second driver and is SIGKILLed."""
    inputs = make_tree(tmp_path / "docs")
    store_path, clean = tmp_path / "ray", tmp_path / "clean"
    run(store_path, inputs, tiny_model_dir, use_ray=False)  # v1 stored (the paths agree: first test)
    (inputs[0] / "guide.md").write_text("# Guide\n\n" + " ".join(f"Bed {i} gets sand." for i in range(30)))
    (inputs[0] / "tiny.txt").unlink()
    (inputs[1] / "new.md").write_text("# New\n\n" + "Fresh text here. " * 30)
    run(clean, inputs, tiny_model_dir, use_ray=False, prune=True)  # what v2 looks like from scratch

    args = [*inputs, f"--ray={ray_address}", "--model", tiny_model_dir, "--qdrant-path", store_path, "--device", "cpu",
            "--batch-size", 2, "--prune"]
    proc = subprocess.Popen(paused_ingest.command(60, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "test pause after batch 2" in line:
                break
        else:
            raise AssertionError("".join(lines))
        proc.kill()  # SIGKILL: no cleanup in the driver
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert stored(store_path).keys() != stored(clean).keys()  # half done

    summary, _ = run(store_path, inputs, tiny_model_dir, use_ray=True, prune=True)
    assert summary.failed == 1 and summary.documents_deleted == 1
    assert_same_points(stored(clean), stored(store_path))


def test_workers_write_to_a_server_through_the_datasink_with_retries(tmp_path, ray_address, tiny_model_dir,
                                                                       standin):
    inputs = make_tree(tmp_path / "docs")
    ref, ref_msgs = run(tmp_path / "local", inputs, tiny_model_dir, use_ray=False)
    standin.fail("upsert", 2, "503")  # the workers' Uploader retries these
    summary, messages = run(None, inputs, tiny_model_dir, use_ray=True, url=standin.url)
    points = {str(pid): (p["payload"], np.asarray(p["vector"][schema.VECTOR_NAME]))
              for pid, p in standin.points(COLLECTION).items()}
    upserts = [e for e in standin.log if e["path"].endswith("/points") and e["method"] == "PUT"]
    assert comparable(summary) == comparable(ref) and messages == ref_msgs
    assert len(upserts) >= 2 + 1  # the two refused requests were sent again
    assert_same_points(stored(tmp_path / "local"), points)


def test_setup_problems_are_one_line_errors_before_any_embedding(tmp_path, ray_address, tiny_model_dir, monkeypatch):
    from sgpt_qdrant.ingest.pipeline import IngestError

    (tmp_path / "a.txt").write_text("Some text.")
    options = IngestOptions(device="cpu", ray=RayOptions(actors=2))  # 2 actors x 1 CPU = every CPU of the cluster
    with pytest.raises(IngestError, match="leave no CPU of the Ray cluster's 2 for reading"):
        ingest_paths([tmp_path / "a.txt"], store=StoreTarget(tmp_path / "q"), model=str(tiny_model_dir), options=options)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were not installed
    with pytest.raises(IngestError, match=r"pip install 'sgpt-qdrant\[ray\]'"):
        ingest_paths([tmp_path / "a.txt"], store=StoreTarget(tmp_path / "q"), model=str(tiny_model_dir), options=options)
    with closing(EdgeClient(tmp_path / "q")) as client:
        assert client.count(COLLECTION).count == 0


def test_a_server_that_drops_the_workers_writes_is_noticed(tmp_path, ray_address, tiny_model_dir, standin):
    from sgpt_qdrant.ingest.verify import WriteCheckError

    inputs = make_tree(tmp_path / "docs")
    standin.drop_writes = True  # acknowledged, not stored
    with pytest.raises(WriteCheckError, match="acknowledged the writes but does not hold them"):
        run(None, inputs, tiny_model_dir, use_ray=True, url=standin.url)
