"""The command lines' one convention for refused input (sgpt-train, sgpt-eval, sgpt-export-fastembed).

A bad argument, input file or model is one line on stderr, ``Error: <message naming it>``, and
exit status 2: what click itself answers for a bad option, so every refusal reads alike. Library
code raises ordinary exceptions; only the CLI turns them into this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

#: A refused argument or input file: a usage error, as click exits for options.
USAGE_EXIT = 2


class Refused(click.ClickException):
    exit_code = USAGE_EXIT


def refuse(exc: BaseException | str) -> Refused:
    """The exception to raise (``from None``: no traceback) for a refused input."""
    return Refused(str(exc))


@contextlib.contextmanager
def refusing(*errors: type[BaseException]) -> Iterator[None]:
    """Inside, any of ``errors`` becomes :func:`refuse`'s one line and exit 2."""
    try:
        yield
    except errors as exc:
        raise refuse(exc) from None
