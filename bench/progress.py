"""A small progress bar on stderr, so a ten-minute run shows where it is.

On a terminal the bar redraws in place; otherwise (CI logs, ``make`` piped to a
file) it prints one line per step, which keeps logs readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts finished steps out of ``total`` and shows the current one."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 28) -> None:
        self._total = max(1, total)
        self._done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._tty = self._stream.isatty()
        self._started = time.monotonic()

    def start(self, label: str) -> None:
        """Show that ``label`` is now running."""
        elapsed = time.monotonic() - self._started
        filled = self._width * self._done // self._total
        bar = "#" * filled + "." * (self._width - filled)
        line = f"[{bar}] {self._done:>3}/{self._total} {elapsed:6.1f}s  {label}"
        if self._tty:
            self._stream.write("\r\x1b[2K" + line[:160])
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def advance(self) -> None:
        """Mark the current step finished."""
        self._done = min(self._total, self._done + 1)

    def close(self) -> None:
        """Finish the bar and move to a fresh line."""
        self._done = self._total
        self.start("done")
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
