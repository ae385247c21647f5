"""Issue 21: the Ray cluster failing mid-run (a killed raylet, a dead node or actor, a timeout) is one
line and exit 1, no traceback; an error of our own code in a task is not mistaken for it.

The fast tests stand a fake ``ray`` (real ``ray.exceptions``) in for the cluster: killing a real
raylet is slow and racy."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

ray_exceptions = pytest.importorskip("ray.exceptions")

from sgpt_qdrant.ingest import distributed  # noqa: E402
from sgpt_qdrant.ingest.cli import cli  # noqa: E402
from sgpt_qdrant.ingest.ray_cluster import is_cluster_failure  # noqa: E402

FAILURES = {
    "raylet": lambda: ray_exceptions.RaySystemError("System error: the raylet at 127.0.0.1 died"),
    "actor": lambda: ray_exceptions.ActorDiedError(),
    "timeout": lambda: ray_exceptions.GetTimeoutError("Get timed out: some object(s) not ready."),
    "node": lambda: ray_exceptions.NodeDiedError("node 1234 died"),
}


class _Dataset:
    def __init__(self, fail):
        self.fail = fail

    def flat_map(self, *a, **k):
        return self

    def map_batches(self, *a, **k):
        return self

    def iter_batches(self, *a, **k):
        raise self.fail()
        yield  # pragma: no cover

    def write_datasink(self, sink):
        raise self.fail()


def _fake_ray(fail):
    data = SimpleNamespace(DataContext=SimpleNamespace(get_current=lambda: SimpleNamespace()),
                           from_items=lambda items: _Dataset(fail), ActorPoolStrategy=lambda size: None)
    return SimpleNamespace(exceptions=ray_exceptions, data=data, cluster_resources=lambda: {"CPU": 4.0})


def _tree(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"d{i}.md").write_text(f"document {i} about topic {i}\n")
    return docs


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.parametrize("kind", list(FAILURES))
def test_a_cluster_failure_mid_run_is_one_line_and_exit_1(tmp_path, tiny_model_dir, monkeypatch, kind):
    monkeypatch.setattr(distributed, "connect", lambda address: contextlib.nullcontext(_fake_ray(FAILURES[kind])))
    docs, store = _tree(tmp_path), tmp_path / "store"
    base = [str(docs), "--qdrant-path", str(store), "--model", str(tiny_model_dir), "-q"]
    result = CliRunner().invoke(cli, [*base, "--ray"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert [line for line in lines if "error" in line] == lines[-1:]  # one error line (-q keeps the "ray:" note)
    assert lines[-1].startswith("sgpt-ingest: error: the Ray cluster stopped during the run (")
    assert lines[-1].endswith("what was written is consistent: run the same command again")
    assert type(FAILURES[kind]()).__name__ in lines[-1]
    # the same command (here in-process) finishes the job
    again = CliRunner().invoke(cli, [*base, "--json"])
    assert again.exit_code == 0, again.output
    assert '"new": 3' in again.output


def test_our_own_error_in_a_task_is_not_a_cluster_failure():
    import ray

    task_error = ray_exceptions.RayTaskError("f", "tb", ValueError("our bug"))
    assert not is_cluster_failure(ray, task_error)
    assert not is_cluster_failure(ray, ValueError("our bug"))
    assert is_cluster_failure(ray, ray_exceptions.RayTaskError("f", "tb", ray_exceptions.ActorDiedError()))
    assert is_cluster_failure(ray, ray_exceptions.WorkerCrashedError())


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_our_own_error_still_surfaces_as_before(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(distributed, "connect", lambda address: contextlib.nullcontext(
        _fake_ray(lambda: ray_exceptions.RayTaskError("f", "tb", KeyError("x")))))
    result = CliRunner().invoke(cli, [str(_tree(tmp_path)), "--qdrant-path", str(tmp_path / "s"), "--model",
                                      str(tiny_model_dir), "-q", "--ray"])
    assert "Ray cluster stopped" not in result.output and result.exit_code == 2, result.output


@pytest.mark.slow
def test_a_killed_raylet_is_one_line_and_exit_1_and_a_rerun_finishes(tmp_path, tiny_model_dir):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    psutil = pytest.importorskip("psutil")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i}.md").write_text(f"doc {i} " + "word " * 200)
    base = [str(Path(sys.executable).with_name("sgpt-ingest")), str(docs), "--qdrant-path", str(tmp_path / "store"),
            "--model", str(tiny_model_dir), "-q"]
    import paused_ingest  # tests/: sgpt-ingest pausing after each batch

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(paused_ingest.command(1, *base[1:], "--ray", "--batch-size", "4"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    raylet, deadline = None, time.time() + 180
    while raylet is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        raylet = next((c for c in psutil.Process(proc.pid).children(recursive=True) if c.name() == "raylet"), None)
    assert raylet is not None, "no raylet started"
    time.sleep(6)  # the run is under way (a batch a second)
    os.kill(raylet.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("sgpt-ingest: error")]
    assert len(errors) == 1 and "the Ray cluster stopped during the run" in errors[0], err
    assert errors[0].endswith("what was written is consistent: run the same command again")
    again = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr
    import json

    record = json.loads(again.stdout)
    assert record["failed"] == 0 and record["new"] + record["changed"] + record["unchanged"] == 30
