"""The one wall clock: microseconds since the epoch.

Adapters and entrypoints read it here; the pure core never does (it is given the
time), and tests replace it by passing a clock of their own."""

from __future__ import annotations

import time

__all__ = ["wall_clock_us"]


def wall_clock_us() -> int:
    """Wall-clock microseconds since the epoch."""
    return time.time_ns() // 1000
