"""The store options of every command, and the one value they become (:class:`ingest.client.StoreTarget`).

``sgpt-ingest``, ``sgpt-store``, ``sgpt-eval-retrieval`` and the query examples take a store the same
way: ``--qdrant-path`` (the embedded store's folder), ``--qdrant-url`` (a server; env
``QDRANT_URL``), ``--prefer-grpc``, ``--timeout``, and the API key from ``QDRANT_API_KEY`` only
(stripped and checked by :func:`ingest.client.api_key_from_env`, never a flag: it would show in
``ps``). A command with two stores (``sgpt-store copy``) names the options of each with its own
flags. Light: no qdrant-client here, so ``--help`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from .client import API_KEY_ENV, DEFAULT_PATH, StoreTarget

URL_ENV = "QDRANT_URL"
PATH_HELP = "Folder of the embedded Qdrant store (Qdrant Edge); used when no URL is given."
URL_HELP = (f"Qdrant server URL (env {URL_ENV}). The API key is read from env {API_KEY_ENV} only "
            "(surrounding spaces and newlines are stripped; it is never printed).")


def path_option(flag: str = "--qdrant-path", *, help: str = PATH_HELP, default: str | None = DEFAULT_PATH,
                **kwargs) -> Callable:
    """An embedded store's folder."""
    return click.option(flag, default=default, show_default=default is not None, help=help, **kwargs)


def url_option(flag: str = "--qdrant-url", *, help: str = URL_HELP, envvar: str | None = URL_ENV) -> Callable:
    """A Qdrant server's URL (``--qdrant-url`` also from env ``QDRANT_URL``)."""
    return click.option(flag, envvar=envvar, default=None, help=help)


grpc_option = click.option("--prefer-grpc", is_flag=True, help="Talk to the server over gRPC.")
timeout_option = click.option("--timeout", type=int, default=None, help="Server request timeout in seconds.")


def store_options(*, path_help: str = PATH_HELP, url_help: str = URL_HELP, timeout: bool = True) -> Callable:
    """``--qdrant-path``, ``--qdrant-url``, ``--prefer-grpc`` (and ``--timeout``): the arguments of
    :func:`store_target`."""
    options = [path_option(help=path_help), url_option(help=url_help), grpc_option] + ([timeout_option] if timeout
                                                                                       else [])

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def store_target(qdrant_path: str | os.PathLike[str] | None = None, qdrant_url: str | None = None,
                 prefer_grpc: bool = False, timeout: int | None = None) -> StoreTarget:
    """The options' values as the store to open, with the key of the environment. Raises
    :class:`ingest.client.StoreError` for a key no HTTP header can carry (the message does not show it)."""
    return StoreTarget.from_env(qdrant_path, qdrant_url, prefer_grpc=prefer_grpc, timeout=timeout)
