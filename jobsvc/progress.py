"""Progress of long work on a terminal: one line, redrawn in place at most ten times a second.

Shown only when the stream is a terminal (``isatty``); anywhere else (a pipe, a file, CI's log) it writes
nothing at all, so output stays what scripts expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

INTERVAL = 0.1  # seconds between two redraws
CLEAR_TO_END = "\x1b[K"


class Progress:
    def __init__(self, stream: TextIO, *, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.shown = _is_terminal(stream)
        self.interval = interval
        self.clock = clock
        self._last = -interval
        self._drawn = False

    def note(self, text: str) -> None:
        """Replace the line with ``text`` now (a step that has no count)."""
        if self.shown:
            self._draw(text)

    def count(self, label: str, done: int, total: int, unit: str) -> None:
        """``label: done / total unit (percent)``, unless the last redraw was too recent (the last one always)."""
        if not self.shown:
            return
        now = self.clock()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        percent = done * 100 // total if total else 100
        self._draw(f"{label}: {done:,} / {total:,} {unit} ({percent}%)")

    def finish(self) -> None:
        """End the line, so what follows starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _draw(self, text: str) -> None:
        self.stream.write(f"\r{text}{CLEAR_TO_END}")
        self.stream.flush()
        self._drawn = True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False
