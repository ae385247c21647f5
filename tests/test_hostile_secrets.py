"""No key on the Ray write path (issue 21, 5)."""

from __future__ import annotations

import traceback

import numpy as np
import pytest

pytest.importorskip("ray.data")
pd = pytest.importorskip("pandas")

from sgpt_qdrant.ingest.client import StoreTarget  # noqa: E402
from sgpt_qdrant.ingest.distributed import CHUNK, ServerTarget, WorkerWriteError, _make_sink  # noqa: E402
from sgpt_qdrant.ingest.plan import BLANK_ROW, ChunkSettings  # noqa: E402

KEY = "SECRET-XYZ-123"


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_write_task_failure_carries_no_key_and_no_server_body(standin):
    standin.api_key = "the-server-key"  # a 401 whose body echoes the request's headers, our key included
    row = {"file": 0, **BLANK_ROW, "kind": CHUNK, "chunk_count": 1, "doc_id": "docs/a.md", "path": "/x/docs/a.md",
           "text": "hello", "index": 0, "start": 0, "end": 5, "content_hash": "h", "version": "v", "actor": "a",
           "embed_seconds": 0.0, "vector": np.ones(4, dtype=np.float32)}
    sink = _make_sink(ServerTarget(StoreTarget(url=standin.url, api_key=KEY, timeout=2), "c"),
                      ChunkSettings(None, 75, "tiny"))
    with pytest.raises(WorkerWriteError) as caught:
        sink.write([pd.DataFrame([row])], None)
    text = "".join(traceback.format_exception(caught.value))
    assert KEY not in text and "api-key" not in text.lower() and "headers" not in text
    assert "HTTP 401" in str(caught.value) and caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.slow  # starts a Ray cluster (about 20 s)
def test_a_local_ray_cluster_started_by_the_ingest_listens_on_loopback_only(tmp_path):
    import os
    import subprocess
    import sys

    from ray._private import utils

    if utils.read_ray_address() or os.environ.get("RAY_ADDRESS"):
        pytest.skip("a Ray cluster runs on this machine: connect() would join it")
    probe = (
        "import ray\n"
        "from sgpt_qdrant.ingest.distributed import connect\n"
        "with connect(None) as r:\n"
        "    print(r.util.get_node_ip_address(), r.get_runtime_context().gcs_address)\n"
        "    port = int(r.get_runtime_context().gcs_address.rsplit(':', 1)[1])\n"
        "    rows = [l.split() for f in ('/proc/net/tcp', '/proc/net/tcp6') for l in open(f).read().splitlines()[1:]]\n"
        "    print(sorted({r[1].split(':')[0] for r in rows if r[3] == '0A' and int(r[1].split(':')[1], 16) == port}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240,
                         env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert out.returncode == 0, out.stderr[-2000:]
    ip_line, bound = out.stdout.strip().splitlines()[-2:]
    assert ip_line.split()[0] == "127.0.0.1" and ip_line.split()[1].startswith("127.0.0.1:")
    assert bound in ("['0100007F']", "['0000000000000000FFFF00000100007F']")  # 127.0.0.1 (v4 or v4-mapped v6)
