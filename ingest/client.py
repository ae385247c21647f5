"""Opening a Qdrant client (embedded folder or server) and talking about it without leaking secrets.

The one home of: where the client writes (for messages, never with credentials), the API key
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
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # qdrant-client is imported when a client is opened: `sgpt-ingest --help` stays fast
    from qdrant_client import QdrantClient

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
    """True for qdrant-client's embedded local mode (path or ":memory:")."""
    inner = getattr(client, "_client", None)
    return type(inner).__name__ in {"QdrantLocal", "AsyncQdrantLocal"}


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
    if status in (401, 403):
        hint = f"check {API_KEY_ENV} (the key the server was started with, or a read-write JWT)"
    elif isinstance(source, json.JSONDecodeError) or status == 404:
        hint = "is --qdrant-url the REST address of a Qdrant server (port 6333, or 6334 with --prefer-grpc)?"
    elif isinstance(source, (ConnectionError, OSError)) or "connect" in cause.lower() or "refused" in cause.lower():
        hint = "is the server running and --qdrant-url right?"
    else:
        hint = "check --qdrant-url and the server's log"
    return StoreError(f"cannot use Qdrant at {where} ({cause}): {hint}")


@contextlib.contextmanager
def open_client(path: str | None = None, url: str | None = None, api_key: str | None = None,
                prefer_grpc: bool = False, timeout: int | None = None,
                create: bool = True) -> Iterator[QdrantClient | None]:
    """A client that is always closed. ``create=False`` yields None for a missing local folder.

    A locked embedded folder (another process holds it) is a :class:`StoreError` at once."""
    from qdrant_client import QdrantClient

    if url:
        try:
            client = QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout)
        except ValueError as exc:
            raise StoreError(f"--qdrant-url {safe_url(url)}: {redact(str(exc), [api_key])}") from None
    else:
        path = path or DEFAULT_PATH
        if not create and not Path(path).exists():
            yield None
            return
        try:
            client = QdrantClient(path=path)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreError(f"{path}: the Qdrant storage folder is in use by another process "
                                 "(another sgpt-ingest or a client); wait for it or use a Qdrant server") from None
            raise
        except (ValueError, OSError, EOFError, KeyError) as exc:  # e.g. a truncated meta.json
            meta = Path(path) / "meta.json"
            raise StoreError(f"{meta if meta.exists() else path}: the embedded Qdrant store cannot be opened "
                             f"({describe(exc)}); if it was not written by qdrant-client or is damaged, move it "
                             "away or pass another --qdrant-path") from None
    try:
        yield client
    finally:
        client.close()
