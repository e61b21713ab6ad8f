"""A dependency-free progress bar for the CLI (library code reports progress through callbacks)."""
from __future__ import annotations

import sys
import time
from typing import IO


class ProgressBar:
    """``with ProgressBar(total, "tiles") as bar: bar.update(n)`` — draws on stderr when it is a TTY.

    Redraws at most 10 times a second; ``enabled=False`` (or a non-TTY stream) makes it silent.
    """

    def __init__(
        self, total: int | None, desc: str = "", *, stream: IO[str] | None = None, enabled: bool | None = None
    ) -> None:
        self.total = total
        self.desc = desc
        self.count = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._start = time.monotonic()
        self._last_draw = 0.0

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_total(self, total: int) -> None:
        self.total = total
        self._draw(force=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        self._draw(force=self.total is not None and self.count >= self.total)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(self.count / self.total, 1.0)
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            # no rate before the first unit is done: say so rather than print "eta nans"
            eta = f"eta {(self.total - self.count) / rate:.0f}s" if rate > 0 else "eta --"
            line = f"{self.desc} [{bar}] {self.count}/{self.total} {rate:.1f}/s {eta}"
        else:
            line = f"{self.desc} {self.count} {rate:.1f}/s"
        self.stream.write("\r" + line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
