"""Opening a Qdrant client (the embedded Qdrant Edge store or a server) and talking about it without leaking secrets.

The one home of: the store connection as a value (:class:`StoreTarget`: built once at the edge,
by the commands' shared options in :mod:`ingest.cli_options`, opened where it is needed), where the client writes (for messages, never with credentials), the API key
from the environment (surrounding whitespace stripped: a key read from a CRLF ``.env`` file or
with its newline would otherwise be sent as an illegal header and echoed in the error), the
redaction of that key from any text before it is shown, and set-up errors that name the server
and say what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # qdrant-client is imported when a client is opened: `sgpt-ingest --help` stays fast
    from qdrant_client import QdrantClient

    from .edge import EdgeClient

DEFAULT_PATH = "./qdrant_storage"
API_KEY_ENV = "QDRANT_API_KEY"
REDACTED = "[redacted]"


class StoreError(RuntimeError):
    """A problem with the store that stops the run before any work: one line, says what to do."""


def api_key_from_env(environ: dict | None = None) -> str | None:
    """``QDRANT_API_KEY`` with surrounding whitespace (spaces, CR, LF) stripped; None when unset or blank.

    A key that is not printable ASCII cannot be sent as an HTTP header: refused with a message
    that does not show it."""
    raw = (environ if environ is not None else os.environ).get(API_KEY_ENV)
    key = (raw or "").strip()
    if not key:
        return None
    if not key.isascii() or not key.isprintable():
        raise StoreError(f"{API_KEY_ENV} holds characters an HTTP header cannot carry (non-ASCII or control "
                         "characters); set it to the key exactly as the Qdrant server was given it")
    return key


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (and its whitespace-padded raw form) replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret.strip()) >= 1:
            for form in {secret, secret.strip()}:
                if form:
                    text = text.replace(form, REDACTED)
    return text


def is_local(client: QdrantClient) -> bool:
    """True for qdrant-client's local mode (path or ":memory:"): now only a migration source and a test reference."""
    inner = getattr(client, "_client", None)
    return type(inner).__name__ in {"QdrantLocal", "AsyncQdrantLocal"}


def is_embedded(client) -> bool:
    """True for a store in this process (Qdrant Edge, or qdrant-client's local mode): no network, one writer."""
    from .edge import EdgeClient

    return isinstance(client, EdgeClient) or is_local(client)


def legacy_local_store(path: str | os.PathLike[str]) -> bool:
    """A folder written by qdrant-client's local mode (``meta.json`` + ``collection/<name>/storage.sqlite``),
    not by Qdrant Edge (``collections/``)."""
    root = Path(path)
    return (root / "meta.json").is_file() and not (root / "collections").is_dir()


def legacy_message(path: str | os.PathLike[str]) -> str:
    return (f"{path}: a store written by qdrant-client local mode (an earlier sgpt-qdrant); migrate it once with: "
            f"sgpt-store migrate --qdrant-path {path}")


def safe_url(url: str) -> str:
    """A URL for messages: no user, password or query string."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")) or "the Qdrant server"
    except ValueError:
        return "the Qdrant server"


def client_url(client: QdrantClient) -> str:
    """Where the client writes, for messages: no credentials, no query string."""
    from .edge import EdgeClient

    if isinstance(client, EdgeClient):
        return f"local:{client.path}"
    inner = getattr(client, "_client", None)
    if is_local(client):
        return f"local:{getattr(inner, 'location', '?')}"
    if getattr(inner, "_prefer_grpc", False) and getattr(inner, "_host", None):
        return f"{inner._host}:{inner._grpc_port} (gRPC)"
    return safe_url(getattr(inner, "rest_uri", None) or "")


def grpc_code_name(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        value = code()
    except Exception:
        return None
    return getattr(value, "name", None)


def describe(exc: BaseException) -> str:
    """A short cause for messages: status and reason, never a raw server body (it may echo headers)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return f"HTTP {exc.status_code} {exc.reason_phrase}".strip()
    name = grpc_code_name(exc)
    if name is not None:
        return f"gRPC {name}"
    if isinstance(exc, ResponseHandlingException) and exc.source is not None:
        exc = exc.source
    if isinstance(exc, json.JSONDecodeError):
        return "the answer is not JSON"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def setup_error(exc: BaseException, where: str) -> StoreError:
    """A failed first contact with a server, as one line that names it and says what to do."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    cause = describe(exc)
    status = getattr(exc, "status_code", None)
    source = getattr(exc, "source", None) if isinstance(exc, ResponseHandlingException) else exc
    if isinstance(exc, ValueError) and "collection" in str(exc).lower():  # qdrant-client refused the name
        return StoreError(f"--collection: {describe(exc)}")
    if status in (401, 403):
        hint = f"check {API_KEY_ENV} (the key the server was started with, or a read-write JWT)"
    elif isinstance(source, json.JSONDecodeError) or status == 404:
        hint = "is --qdrant-url the REST address of a Qdrant server (port 6333, or 6334 with --prefer-grpc)?"
    elif isinstance(source, (ConnectionError, OSError)) or "connect" in cause.lower() or "refused" in cause.lower():
        hint = "is the server running and --qdrant-url right?"
    else:
        hint = "check --qdrant-url and the server's log"
    return StoreError(f"cannot use Qdrant at {where} ({cause}): {hint}")


def open_embedded(path: str | os.PathLike[str] = DEFAULT_PATH, *, create: bool = True) -> EdgeClient:
    """The embedded store in ``path`` (close it): refused with one line (:class:`StoreError`) when another
    process has it open or qdrant-client's local mode wrote it (that one is never opened: it unpickles)."""
    from .edge import EdgeClient

    if legacy_local_store(path):
        raise StoreError(legacy_message(path))
    try:
        return EdgeClient(path, create=create)
    except OSError as exc:
        raise StoreError(f"{path}: the embedded Qdrant store cannot be opened ({describe(exc)})") from None


@contextlib.contextmanager
def open_client(path: str | None = None, url: str | None = None, api_key: str | None = None,
                prefer_grpc: bool = False, timeout: int | None = None,
                create: bool = True) -> Iterator[QdrantClient | EdgeClient | None]:
    """A client that is always closed: a server's ``QdrantClient`` for ``url``, else the embedded store
    (:class:`ingest.edge.EdgeClient`) in the folder ``path``. ``create=False`` yields None for a missing folder.

    A folder in use by another process, or one written by qdrant-client's local mode (never opened
    with it: it unpickles), is a :class:`StoreError` at once."""
    if url:
        from qdrant_client import QdrantClient

        try:
            client = QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout)
        except ValueError as exc:
            raise StoreError(f"--qdrant-url {safe_url(url)}: {redact(str(exc), [api_key])}") from None
    else:
        path = str(path or DEFAULT_PATH)
        if not create and not Path(path).exists():
            yield None
            return
        client = open_embedded(path, create=create)
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class StoreTarget:
    """Where the vectors live: a Qdrant server at ``url`` (``api_key``, kept out of ``repr``;
    ``prefer_grpc``; ``timeout`` seconds per request), else the embedded store in the folder
    ``path`` (default ``./qdrant_storage``). One value from the command line (or a caller) to
    every place that opens the store; printable as :meth:`where` without credentials."""

    path: str | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    prefer_grpc: bool = False
    timeout: int | None = None

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, str):
            object.__setattr__(self, "path", os.fspath(self.path))

    def __repr__(self) -> str:  # no key, and no user or password of the URL
        extra = (", gRPC" if self.prefer_grpc else "") + (f", timeout={self.timeout}" if self.timeout else "")
        return f"StoreTarget({self.where()!r}{extra})"

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None, url: str | None = None, *,
                 prefer_grpc: bool = False, timeout: int | None = None) -> StoreTarget:
        """The target with the API key of the environment (:func:`api_key_from_env`: stripped, checked)."""
        return cls(path, url, api_key_from_env(), prefer_grpc, timeout)

    @property
    def embedded(self) -> bool:
        return not self.url

    @property
    def folder(self) -> str:
        """The embedded store's folder (meaningless for a server)."""
        return self.path or DEFAULT_PATH

    def where(self) -> str:
        """For messages: the server's URL without user, password or query, or ``local:FOLDER``."""
        return safe_url(self.url) if self.url else f"local:{self.folder}"

    def open(self, *, create: bool = True) -> contextlib.AbstractContextManager:
        """:func:`open_client` on this target (``create=False``: None for a missing folder)."""
        return open_client(self.path, self.url, self.api_key, self.prefer_grpc, self.timeout, create=create)
