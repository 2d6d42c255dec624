"""Timing helpers every benchmark shares (benchmarks run as scripts, so this is on sys.path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(action: Callable[[], object]) -> float:
    """Seconds one call of ``action`` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_of(runs: int, action: Callable[[], object]) -> float:
    """The median of ``runs`` timings of ``action``: one slow outlier does not move it."""
    return statistics.median(timed(action) for _ in range(runs))
