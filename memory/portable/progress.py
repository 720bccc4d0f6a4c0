"""A plain-text progress line on stderr: a bar when the total is known, a count otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """Redraws one line at most ten times a second; silent when `enabled` is False (not a TTY, or --quiet)."""

    def __init__(self, label: str, *, total: int | None = None, enabled: bool = True, stream: IO[str] | None = None):
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._drawn = False

    def update(self, records: int, done: int | None = None, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if self.total and done is not None:
            share = min(1.0, done / self.total)
            bar = "#" * int(share * 30)
            line = f"{self.label} [{bar:<30}] {share:4.0%}  {records:,} records"
        else:
            line = f"{self.label} {records:,} records"
        self.stream.write("\r" + line)
        self.stream.flush()
        self._drawn = True

    def finish(self, records: int, done: int | None = None) -> None:
        if not self.enabled:
            return
        self.update(records, done, force=True)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
