"""Pipelined, retrying point writer for qdrant-client.

Why: one blocking `upsert(wait=True)` per batch leaves a server idle most of the time. The
Uploader keeps up to `max_in_flight` batches on the wire (`wait=False`), retries transient
failures (timeouts, connection errors, HTTP 5xx/429, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/
RESOURCE_EXHAUSTED) with exponential backoff and full jitter, and ends with one `wait=True`
request so that everything acknowledged is also applied when `close()` returns.

Retrying cannot duplicate anything because point ids are deterministic: an upsert of an id that
is already stored overwrites it. So when the server stays down, the error says to re-run the same
command, which completes the job.

Ordering guarantee: a `delete()` is a barrier by default. It waits until every earlier write
(buffered or in flight) has been acknowledged, runs alone, and later writes are sent only after
it has been acknowledged. Writes between two barriers may be applied in any order among
themselves, except that an id upserted twice is never in flight twice at once (the later value
wins). `delete(..., barrier=False)` is for deletes that cannot touch a point written in this
run (e.g. "this document's chunks past its new end", or pruned documents): those are coalesced and
pipelined without draining, so a delete per document does not serialise a first load. Ids are
collected into one id list per request (``batch_size`` ids): the embedded store then deletes by
id, where a filter would be evaluated over every stored point (quadratic over a run). On a cluster
with replication_factor > 1 pass `ordering=WriteOrdering.MEDIUM` (or STRONG) so that replicas
see the same order.

An embedded store (Qdrant Edge's :class:`ingest.edge.EdgeClient`, or qdrant-client's ":memory:") has
no network to hide and one writer: there the Uploader writes synchronously in the caller's thread.
An Uploader that is given nothing sends nothing (no final request either) and never imports
qdrant-client: an unchanged re-run pays for neither.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .._lazy import lazy_module
from .client import client_url, describe as _describe, grpc_code_name as _grpc_code_name, is_embedded, is_local

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models
else:  # imported where a request is built: an Uploader given nothing never needs it
    models = lazy_module("qdrant_client.models")

__all__ = ["Uploader", "UploadError", "is_retryable", "is_embedded", "is_local", "client_url", "FLUSH_MARKER_ID"]

log = logging.getLogger(__name__)

# Never produced by ingest (uuid5 of a name no document has): the final wait=True request is a
# delete of this id through a filter, which every shard applies after everything sent before it.
FLUSH_MARKER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "sgpt-qdrant:flush-marker"))

_RETRY_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}


class UploadError(RuntimeError):
    """A write that failed for good: the server stayed unreachable, or rejected the request."""


def is_retryable(exc: BaseException) -> bool:
    """Transient failures worth another try; 4xx and programming errors are not."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    if isinstance(exc, ResponseHandlingException):
        return True  # qdrant-client wraps transport errors (timeouts, refused connections) in it
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a qdrant-client dependency
        httpx = None
    if httpx is not None and isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return True
    name = _grpc_code_name(exc)
    if name is not None:
        return name in _RETRY_GRPC
    return False


class Uploader:
    """Buffer points into batches and write them with bounded concurrency and retries.

    Use as a context manager; `close()` (or leaving the `with` block normally) flushes, waits
    for every request and makes the final `wait=True` request. Leaving it with an exception
    waits for the requests already sent but skips the final request and raises the original
    exception. The first failure is raised from the next `upsert`/`delete`/`flush`/`close`.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection_name: str,
        *,
        batch_size: int = 256,
        max_in_flight: int = 4,
        delete_batch: int = 64,
        barrier_deletes: bool = True,
        retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        jitter: float = 1.0,
        wait: bool | None = None,
        ordering: models.WriteOrdering | None = None,
        url: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if retries < 0:
            raise ValueError(f"retries must be at least 0, got {retries}")
        self.client = client
        self.collection_name = collection_name
        self.batch_size = batch_size
        self.delete_batch = max(1, delete_batch)
        self.barrier_deletes = barrier_deletes
        self.local = is_embedded(client)
        self.max_in_flight = 1 if self.local else max_in_flight
        self.wait = self.local if wait is None else wait
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.jitter = jitter
        self.ordering = ordering
        self.url = url or client_url(client)
        self._stop = threading.Event()  # set by abort(): no more retries or new requests
        self._rng = rng or random.Random()
        self._buffer: dict[Any, models.PointStruct] = {}
        self._deletes: list[models.Filter] = []
        self._delete_ids: list[Any] = []
        self._pool = None if self.local else ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="qdrant-upload")
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._lock = threading.Lock()
        self._futures: set[Future] = set()
        self._in_flight_ids: set[Any] = set()
        self._error: BaseException | None = None
        self._closed = False
        # figures for summaries and benchmarks
        self.points_written = 0
        self.requests = 0
        self.retried = 0

    # -- public API -----------------------------------------------------------------------

    def upsert(self, points: Iterable[models.PointStruct]) -> None:
        """Queue points; full batches are sent as they fill up."""
        self._check_open()
        for point in points:
            if point.id in self._buffer:
                del self._buffer[point.id]  # the later value wins, and keeps its place
            self._buffer[point.id] = point
            if len(self._buffer) >= self.batch_size:
                self._send_buffer()

    def delete(
        self, points_selector: models.PointsSelector | models.Filter | Sequence[Any], *, barrier: bool | None = None
    ) -> None:
        """Delete points by filter, selector or list of ids.

        barrier=None takes the constructor's `barrier_deletes` (True unless set).
        barrier=True: sent after every earlier write is acknowledged, and later
        writes wait for it. barrier=False: for deletes that cannot match a point written in this
        run (ingest's "this document's chunks of any other version", or pruning documents that
        are gone): filters are coalesced, `delete_batch` at a time, into one `should` filter, ids
        into one id list of up to `batch_size` ids, and pipelined like upserts, with no ordering
        against them.
        """
        self._check_open()
        if isinstance(points_selector, (list, tuple)) and not points_selector:
            return  # nothing to delete (an empty id list is an error for Qdrant)
        if barrier is None:
            barrier = self.barrier_deletes
        if not barrier:
            if isinstance(points_selector, models.FilterSelector):
                points_selector = points_selector.filter
            elif isinstance(points_selector, models.PointIdsList):
                points_selector = list(points_selector.points)
            if isinstance(points_selector, (list, tuple)):
                self._delete_ids.extend(points_selector)  # by id: no filter pass over the collection
                if len(self._delete_ids) >= self.batch_size:
                    self._send_deletes()
                return
            if not isinstance(points_selector, models.Filter):
                raise TypeError(f"delete(barrier=False) takes a Filter, FilterSelector or ids, not {points_selector!r}")
            self._deletes.append(points_selector)
            if len(self._deletes) >= self.delete_batch:
                self._send_deletes()
            return
        if isinstance(points_selector, models.Filter):
            points_selector = models.FilterSelector(filter=points_selector)
        elif isinstance(points_selector, (list, tuple)):
            points_selector = models.PointIdsList(points=list(points_selector))
        self._drain()
        self._call(
            "delete",
            lambda: self.client.delete(
                self.collection_name, points_selector=points_selector, wait=self.wait, ordering=self.ordering
            ),
        )

    def flush(self) -> None:
        """Send what is buffered and wait until every request has been acknowledged."""
        self._check_open()
        self._drain()

    def close(self) -> None:
        """Flush, then one `wait=True` request: acknowledged writes are applied on return (none
        when nothing was ever sent: nothing to wait for)."""
        if self._closed:
            return
        try:
            self._drain()
            if not self.requests:
                return
            self._call(
                "final consistency wait",
                lambda: self.client.delete(
                    self.collection_name,
                    points_selector=models.FilterSelector(
                        filter=models.Filter(must=[models.HasIdCondition(has_id=[FLUSH_MARKER_ID])])
                    ),
                    wait=True,
                    ordering=self.ordering,
                ),
            )
        except BaseException:
            self._stop.set()  # e.g. Ctrl-C while draining: stop the retries, then shut down
            raise
        finally:
            self._shutdown()

    def abort(self) -> None:
        """Stop: drop what is buffered, stop retrying, wait for the requests on the wire, close.

        For Ctrl-C and errors: nothing new is sent, so it returns within one request timeout.
        """
        if self._closed:
            return
        self._buffer.clear()
        self._deletes.clear()
        self._delete_ids.clear()
        self._stop.set()
        try:
            self._wait_all()
        finally:
            self._shutdown()

    def __enter__(self) -> "Uploader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UploadError("the uploader is closed")
        self._raise_pending()

    def _raise_pending(self) -> None:
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def _shutdown(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _drain(self) -> None:
        if self._buffer:
            self._send_buffer()
        if self._deletes or self._delete_ids:
            self._send_deletes()
        self._wait_all()
        self._raise_pending()

    def _wait_all(self) -> None:
        while True:
            with self._lock:
                pending = list(self._futures)
            if not pending:
                return
            for future in pending:
                future.exception()  # waits; errors are recorded by the task itself

    def _send_buffer(self) -> None:
        batch = list(self._buffer.values())
        self._buffer.clear()
        ids = {point.id for point in batch}
        with self._lock:
            overlap = bool(ids & self._in_flight_ids)
        if overlap:
            self._wait_all()  # an id still in flight: let it land before its newer value
        self._submit(lambda: self._write(batch), ids)

    def _send_deletes(self) -> None:
        selectors = []
        if self._delete_ids:
            selectors.append(models.PointIdsList(points=self._delete_ids))
            self._delete_ids = []
        if self._deletes:
            filters = self._deletes
            self._deletes = []
            flt = filters[0] if len(filters) == 1 else models.Filter(should=filters)
            selectors.append(models.FilterSelector(filter=flt))
        for selector in selectors:
            self._submit(
                lambda selector=selector: self._call(
                    "delete",
                    lambda: self.client.delete(
                        self.collection_name, points_selector=selector, wait=self.wait, ordering=self.ordering
                    ),
                ),
                set(),
            )

    def _submit(self, job: Callable[[], None], ids: set[Any]) -> None:
        self._raise_pending()
        if self._pool is None:
            job()
            return
        self._slots.acquire()  # bounds the requests held in memory and on the wire
        with self._lock:
            self._in_flight_ids |= ids
        try:
            future = self._pool.submit(self._task, job, ids)
        except BaseException:
            with self._lock:
                self._in_flight_ids -= ids
            self._slots.release()
            raise
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def _task(self, job: Callable[[], None], ids: set[Any]) -> None:
        try:
            if self._error is None and not self._stop.is_set():  # after a failure or abort nothing new is sent
                job()
        except BaseException as exc:  # recorded and raised in the caller's thread
            with self._lock:
                if self._error is None:
                    self._error = exc
        finally:
            with self._lock:
                self._in_flight_ids -= ids
            self._slots.release()

    def _write(self, batch: list[models.PointStruct]) -> None:
        self._call(
            "upsert",
            lambda: self.client.upsert(self.collection_name, points=batch, wait=self.wait, ordering=self.ordering),
        )
        with self._lock:
            self.points_written += len(batch)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2**attempt capped, `jitter` share random."""
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        return delay * (1.0 - self.jitter) + delay * self.jitter * self._rng.random()

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        started = time.monotonic()
        attempt = 0
        while True:
            with self._lock:
                self.requests += 1
            try:
                return request()
            except Exception as exc:
                if not is_retryable(exc):
                    raise UploadError(
                        f"Qdrant at {self.url} rejected the {what} on collection "
                        f"{self.collection_name!r}: {_describe(exc)}"
                    ) from exc
                if attempt >= self.retries:
                    raise UploadError(
                        f"Qdrant at {self.url} stayed unreachable: the {what} failed {attempt + 1} times over "
                        f"{time.monotonic() - started:.0f}s (last: {_describe(exc)}). Nothing written is lost "
                        "or duplicated: re-running the same command completes the job."
                    ) from exc
                delay = self._backoff(attempt)
                attempt += 1
                with self._lock:
                    self.retried += 1
                log.warning(
                    "Qdrant at %s: %s failed (%s), retry %d/%d in %.1fs",
                    self.url, what, _describe(exc), attempt, self.retries, delay,
                )
                if self._stop.wait(delay):
                    raise UploadError(f"the {what} to Qdrant at {self.url} was abandoned: the upload was stopped") from exc
