"""``sgpt-ingest`` that pauses after each written batch, so a test can kill it at a known point.

    python tests/paused_ingest.py SECONDS [sgpt-ingest arguments ...]

After each batch handed to the writer it prints ``sgpt-ingest: test pause after batch N`` on
stderr and sleeps SECONDS. It is the console script (``ingest.cli.main``: its Ctrl-C handling and
exit statuses) with a writer wrapped through ``ingest_paths``' ``writer_hook``; the command itself
knows nothing of it. Tests build the command line with :func:`command`.
"""

from __future__ import annotations

import sys
import time


def command(seconds: float, *args) -> list[str]:
    """The argv of a paused run of ``sgpt-ingest args``."""
    return [sys.executable, __file__, str(seconds), *map(str, args)]


class PausingWriter:
    """A line and a sleep after each written batch; everything else passed on."""

    def __init__(self, writer, seconds: float) -> None:
        self.writer, self.seconds, self.batches = writer, seconds, 0

    def upsert(self, points) -> None:
        self.writer.upsert(points)
        self.batches += 1
        print(f"sgpt-ingest: test pause after batch {self.batches}", file=sys.stderr, flush=True)
        time.sleep(self.seconds)

    def delete(self, selector) -> None:
        self.writer.delete(selector)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def main() -> None:
    from sgpt_qdrant.ingest import cli, pipeline

    seconds = float(sys.argv.pop(1))
    ingest_paths = pipeline.ingest_paths

    def paused(*args, **kwargs):
        return ingest_paths(*args, writer_hook=lambda writer: PausingWriter(writer, seconds), **kwargs)

    pipeline.ingest_paths = paused  # what cli.run calls
    cli.main()


if __name__ == "__main__":
    main()
