"""What the allocation tests share: the drivers' loop over their calls (run inside a job, as
a script beside this module) and the tests' reading of how many ran at once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any


def run_calls(
    pool: Executor, call: Callable[[int, int], dict[str, Any]], calls: int, failing: int
) -> list[dict[str, Any]]:
    """Every call's result in order; the one that raised ValueError as what it said."""
    futures = [pool.submit(call, index, failing) for index in range(calls)]
    results = []
    for index, future in enumerate(futures):
        try:
            results.append(future.result())
        except ValueError as error:
            results.append({"index": index, "raised": str(error)})
    return results


def most_at_once(results: list[dict[str, Any]]) -> int:
    """The most calls running at one moment, from the times the calls themselves took."""
    moments = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    running, most = 0, 0
    for _, change in moments:  # an end sorts before a start at the same moment
        running += change
        most = max(most, running)
    return most
