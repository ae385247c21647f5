"""No key on the Ray write path (issue 21, 5)."""

from __future__ import annotations

import traceback

import numpy as np
import pytest

pytest.importorskip("ray.data")
pd = pytest.importorskip("pandas")

from sgpt_qdrant.ingest.distributed import CHUNK, ServerTarget, WorkerWriteError, _make_sink  # noqa: E402

KEY = "SECRET-XYZ-123"


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_write_task_failure_carries_no_key_and_no_server_body(standin):
    standin.api_key = "the-server-key"  # a 401 whose body echoes the request's headers, our key included
    row = {"file": 0, "kind": CHUNK, "key": "docs/a.md", "message": "", "warnings": "", "size": 5, "chunk_count": 1,
           "stale": "", "doc_id": "docs/a.md", "path": "/x/docs/a.md", "text": "hello", "index": 0, "start": 0,
           "end": 5, "content_hash": "h", "version": "v", "actor": "a", "embed_seconds": 0.0,
           "vector": np.ones(4, dtype=np.float32)}
    sink = _make_sink(ServerTarget(standin.url, "c", api_key=KEY, timeout=2), "tiny")
    with pytest.raises(WorkerWriteError) as caught:
        sink.write([pd.DataFrame([row])], None)
    text = "".join(traceback.format_exception(caught.value))
    assert KEY not in text and "api-key" not in text.lower() and "headers" not in text
    assert "HTTP 401" in str(caught.value) and caught.value.__cause__ is None and caught.value.__suppress_context__
