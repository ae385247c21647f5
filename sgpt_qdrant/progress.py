"""Progress of a long loop, for the encoder and the trainer alike.

On a terminal a tqdm bar, with log lines printed above it instead of through it; off a terminal
(a log file, CI) a plain log line every 5% of the way, since a bar there is a wall of ``\\r``.
"""

from __future__ import annotations

import logging
import sys
import time


class Progress:
    """``update`` after each unit of work; ``close`` (or ``with``) at the end. Disabled: silent.

    ``bar_off_terminal`` keeps tqdm's bar even when stderr is not a terminal (the encoder's
    ``show_progress``, which asks for a bar). Log lines go to ``logger``, as
    ``"<unit> 5/100  loss 0.31  12 s"`` with the last ``update``'s ``postfix``.
    """

    def __init__(self, total: int, unit: str, desc: str, *, enabled: bool = True, initial: int = 0,
                 logger: logging.Logger | None = None, bar_off_terminal: bool = False) -> None:
        self.total, self.unit, self.done = total, unit, initial
        self.enabled = enabled
        self.every = max(1, total // 20)
        self.started = time.perf_counter()
        self.logger = logger or logging.getLogger(__name__)
        self.bar = None
        self._redirect = None
        if enabled and total and (bar_off_terminal or sys.stderr.isatty()):
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True)
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()

    def update(self, n: int = 1, **postfix: str) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix)
        elif self.enabled and (self.done % self.every == 0 or self.done == self.total):
            shown = "".join(f"  {key} {value}" for key, value in postfix.items())
            self.logger.info("%s %d/%d%s  %.0f s", self.unit, self.done, self.total, shown,
                             time.perf_counter() - self.started)

    def close(self) -> None:
        if self.bar is not None:
            self._redirect.__exit__(None, None, None)
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
