"""The run's progress on stderr: one line per backend with its counts by status and an ETA."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


class Progress:
    """One line per backend on stderr, redrawn in place on a TTY; elsewhere (a CI log) one
    line for all backends at each fifth of the cases, so that a log stays short."""

    PLAIN_STEPS = 5

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.rows: dict[str, dict[str, int]] = {}
        self.t0 = time.monotonic()
        self.done_cases = 0
        self.drawn = 0
        self.plain_step = 0

    def add(self, rec: dict[str, Any]) -> None:
        row = self.rows.setdefault(rec["backend"], {})
        key = "known" if rec.get("known") else rec["status"]
        row[key] = row.get(key, 0) + 1

    def case_done(self, final: bool = False) -> None:
        self.done_cases += 1
        self.draw(final)

    #: No ETA before this many cases, nor before this share of them: the first cases
    #: (warm-up, one-off kernel compilation) say little about the rest.
    ETA_MIN_CASES, ETA_MIN_SHARE = 20, 0.1

    def _eta(self) -> str:
        enough = max(self.ETA_MIN_CASES, math.ceil(self.ETA_MIN_SHARE * self.total))
        if self.done_cases < enough or self.done_cases >= self.total:
            return ""
        left = (time.monotonic() - self.t0) / self.done_cases * (self.total - self.done_cases)
        return f" ETA {_duration(left)}"

    def lines(self) -> list[str]:
        width = max((len(n) for n in self.rows), default=8)
        out = []
        for name, row in self.rows.items():
            n = sum(row.values())
            parts = " ".join(f"{k} {v}" for k, v in sorted(row.items()))
            out.append(f"{name:<{width}}  {n}/{self.total}  {parts}{self._eta()}")
        return out

    def total_line(self) -> str:
        """All backends in one line: "120/400 cases; pass 1500, diverge 300 ... ETA 2m10s"."""
        tally: dict[str, int] = {}
        for row in self.rows.values():
            for k, v in row.items():
                tally[k] = tally.get(k, 0) + v
        parts = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()))
        return f"{self.done_cases}/{self.total} cases on {len(self.rows)} backends; {parts}{self._eta()}"

    def draw(self, final: bool = False) -> None:
        if self.quiet or not self.rows:
            return
        now = time.monotonic()
        if self.tty:
            lines = self.lines()
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:
            step = self.done_cases * self.PLAIN_STEPS // max(self.total, 1)
            if step <= self.plain_step and not (final and self.plain_step < self.PLAIN_STEPS):
                return
            self.plain_step = max(step, self.PLAIN_STEPS if final else step)
            self.stream.write(f"[{_duration(now - self.t0)}] {self.total_line()}\n")
        self.stream.flush()


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")
