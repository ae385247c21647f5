"""What every command line shares: the one convention for refused input, and sleeping CPU threads.

A bad argument, input file or model is one line on stderr, ``Error: <message naming it>``, and
exit status 2: what click itself answers for a bad option, so every refusal reads alike. Library
code raises ordinary exceptions; only the CLI turns them into this.
"""

from __future__ import annotations

import contextlib
import os
import sys
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


def sleeping_cpu_threads() -> None:
    """Let idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy.

    Why: torch's OpenMP workers spin between parallel regions by default. On a small machine the
    spinning worker takes the core that the ingest's writer thread, the next file's chunking and
    other processes need. Measured with sgpt-ingest (tiny model, 2,177 chunks, 2-core EPYC at load
    2-4, three runs each): embedding 4.0-21 s spinning, 1.3-2.8 s sleeping; docs/benchmarks.md.
    OpenMP reads the variable once, when torch loads it: called first thing in every command, a
    no-op once torch is imported (Python users set it themselves before ``import torch``).
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
