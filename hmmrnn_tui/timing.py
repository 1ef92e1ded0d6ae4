"""Responsiveness measurements: time from process start to first paint, and UI-thread stalls.

Both are cheap enough to stay on in production: the stall meter is one timer callback every 50 ms,
and the process age is read from /proc once. They exist because "first paint within 1.5 s" and
"the UI never blocks" are promises that regress silently unless something measures them.
"""

from __future__ import annotations

import os
import time

_IMPORTED_AT = time.perf_counter()


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere: since this import)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of the full line: starttime in clock ticks
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED_AT


class StallMeter:
    """Largest gap between ticks of a periodic UI timer, beyond the expected period.

    If the event loop is blocked (by work done on the UI thread, or by a thread holding the GIL),
    the timer fires late; the lateness is the stall a user would have felt as a frozen screen.
    """

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.max_stall = 0.0
        self.ticks = 0
        self._last: float | None = None

    def tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.max_stall = max(self.max_stall, now - self._last - self.period)
            self.ticks += 1
        self._last = now

    def reset(self) -> None:
        self.max_stall = 0.0
        self.ticks = 0
        self._last = None


def freeze_startup_heap() -> None:
    """Move every object alive now out of the garbage collector's view.

    After start-up the heap holds the imported torch/textual/numpy stack: hundreds of thousands of
    long-lived objects that a full collection re-scans each time, pausing the UI thread 0.2-0.4 s
    (measured by `python -m hmmrnn_tui.bench stalls`). Frozen objects are never freed, which is
    what modules and classes are anyway; everything allocated later is collected as usual.
    """
    import gc

    gc.freeze()
