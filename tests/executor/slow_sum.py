"""A checkpointable function for the executor's tests: sums 1..n, one number per step.

Sent to the workers by value (they cannot import the tests). Its progress lives in one
attribute replaced in one assignment, so a checkpoint taken between any two bytecodes sees
a consistent state; ``runs`` counts the runs that carried the sum on, and comes back with it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle

from hpcbridge.executor import Resubmission

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class SlowSum:
    """``SlowSum(step)(n)`` is ``(1 + 2 + ... + n, runs)``, taking ``step`` seconds a number;
    with ``progress``, each step's next number is written there (the tests wait on it)."""

    def __init__(self, step: float, progress: Path | None = None) -> None:
        self.step = step
        self.progress = progress
        self.state = (1, 0)  # the next number, the sum so far
        self.runs = 0

    def __call__(self, n: int) -> tuple[int, int]:
        self.runs += 1
        while self.state[0] <= n:
            time.sleep(self.step)
            number, total = self.state
            self.state = (number + 1, total + number)
            if self.progress is not None:
                temporary = self.progress.with_suffix(".new")
                temporary.write_text(str(self.state[0]))
                os.replace(temporary, self.progress)
        return self.state[1], self.runs

    def checkpoint(self, n: int) -> Resubmission:
        return Resubmission(self, n)


def reached(progress: Path) -> int:
    """The next number a SlowSum with this progress file will add (1 before it starts)."""
    try:
        return int(progress.read_text() or 1)
    except FileNotFoundError:
        return 1


def expected(n: int) -> int:
    return n * (n + 1) // 2
