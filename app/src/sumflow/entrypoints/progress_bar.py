"""A progress bar on stderr for `rebuild`: records read out of the total, rate and time left, per phase.

On a terminal the line is redrawn in place (at most 10 times a second); otherwise (a log file, a
pipe) one line is written at most every `line_interval` seconds and one when each phase ends, so the
output stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def render_line(phase: str, done: int, total: int, elapsed: float) -> str:
    """`audit [#########.....]  1,200/4,000 records  3,000/s  1s left` (a full bar when the total is 0)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total > 0:
        filled = min(WIDTH, WIDTH * done // total)
        bar = "#" * filled + "." * (WIDTH - filled)
        left = format_duration((total - done) / rate) if rate > 0 and done < total else ("0s" if done >= total else "?")
    else:  # nothing to read: done
        bar, left = "#" * WIDTH, "0s"
    return f"{phase:5} [{bar}] {done:,}/{total:,} records  {rate:,.0f}/s  {left} left"


class ProgressBar:
    """RebuildProgress that draws on a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, line_interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.1 if self.tty else line_interval
        self._phase = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._drawn = 0.0

    def phase(self, name: str, total: int) -> None:
        self._end_phase()
        self._phase, self._total, self._done = name, total, 0
        self._started = self._drawn = time.monotonic()
        if self.tty:
            self._draw(self._started)

    def advance(self, records: int) -> None:
        self._done += records
        now = time.monotonic()
        if now - self._drawn >= self.interval:
            self._draw(now)

    def close(self) -> None:
        self._end_phase()

    def _end_phase(self) -> None:
        if self._phase:
            self._draw(time.monotonic())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
        self._phase = ""

    def _draw(self, now: float) -> None:
        self._drawn = now
        line = render_line(self._phase, self._done, self._total, now - self._started)
        self.stream.write(f"\r{line}\x1b[K" if self.tty else f"{line}\n")
        self.stream.flush()
