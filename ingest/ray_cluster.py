"""The Ray cluster as the ingest uses it: connect (a new local cluster on loopback only), watch
the raylet this process started, and tell the cluster's own failures from errors of our code.

Ray is an optional dependency (``pip install 'sgpt-qdrant[ray]'``); it is imported when a run
asks for it. The run itself is :mod:`ingest.distributed`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any


class RaySetupError(RuntimeError):
    """Before any work: Ray (the ``[ray]`` extra) is missing, the cluster unreachable, or the actor
    pool does not fit it."""


class RayClusterError(RuntimeError):
    """Mid-run: the cluster itself failed (raylet, node, actor or object store gone, a call timed
    out), not our code. What was written is consistent (each document's marker is written last)."""


def is_cluster_failure(ray, exc: BaseException) -> bool:
    """Ray's own failures (a dead raylet, node or actor; a lost object; a timeout), not an error
    raised by our code in a task (``RayTaskError`` wraps that one, unless its cause is Ray's too)."""
    errors = ray.exceptions
    if isinstance(exc, errors.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause is not None and cause is not exc and is_cluster_failure(ray, cause)
    return isinstance(exc, errors.RayError)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] part of the extra
    except ImportError:
        raise RaySetupError("Ray is not installed: pip install 'sgpt-qdrant[ray]'") from None
    return ray


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """Use the Ray connection already made in this process, or make one and close it at the end."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        with _loopback_if_new(ray, address):
            ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RaySetupError(f"cannot connect to the Ray cluster {address or '(default)'}: {exc}") from None
    try:
        yield ray
    finally:
        with contextlib.suppress(Exception):  # a cluster that died mid-run: its own error is the one to show
            ray.shutdown()


#: Ray's switch between "a node others can join" (the machine's address) and loopback only.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_if_new(ray, address: str | None) -> Iterator[None]:
    """A cluster this run starts itself (no address, no ``RAY_ADDRESS``, none started on this
    machine) listens on 127.0.0.1 only: GCS, raylet and workers would otherwise listen on every
    interface for the length of a run nobody else is meant to join. Ray binds to its node address,
    which is loopback when its cluster mode is off (its setting for Windows and macOS)."""
    import os

    from ray._private import ray_constants, utils

    new = address is None and not os.environ.get("RAY_ADDRESS") and not utils.read_ray_address()
    if not new or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved, saved_env = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(_RAY_CLUSTER_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[_RAY_CLUSTER_ENV] = "0"  # the processes it starts agree
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env



def watch_raylet(on_lost: Callable[[str], None], every: float = 0.2) -> None:
    """A daemon thread polling the raylet this process started (none for a cluster joined by address)."""
    import threading

    try:
        from ray._private import ray_constants, worker

        raylets = [p.process for p in worker._global_node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])]
    except Exception:  # noqa: BLE001 - Ray's internals moved, or no node of ours: no watchdog
        return
    if not raylets:
        return

    def watch() -> None:
        while True:
            for raylet in raylets:
                code = raylet.poll()
                if code is not None:
                    on_lost(f"the Ray cluster stopped during the run (its raylet, pid {raylet.pid}, exited with {code})")
                    return
            time.sleep(every)

    threading.Thread(target=watch, name="sgpt-raylet-watch", daemon=True).start()



@contextlib.contextmanager
def cluster_errors(ray) -> Iterator[None]:
    """Ray's own failures inside the block (:func:`is_cluster_failure`) as one :class:`RayClusterError`
    line; errors of our code pass as they are."""
    try:
        yield
    except Exception as exc:
        if not is_cluster_failure(ray, exc):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RayClusterError(f"the Ray cluster stopped during the run ({type(exc).__name__}"
                              f"{': ' + first if first else ''})") from None
