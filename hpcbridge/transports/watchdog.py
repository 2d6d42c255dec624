"""Kill child processes that outlive their time limit, from one shared thread.

``communicate(timeout=...)`` reaps the child by polling with sleeps, and a
``threading.Timer`` per command starts a thread each time; either adds about half a
millisecond or more to every scheduler command, which shows when submitting thousands of
jobs. One long-lived thread watching a heap of deadlines costs a lock and a notify.
"""

from __future__ import annotations

import heapq
import itertools
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass(order=True)
class Watch:
    """One watched process; ``expired`` is set when the watchdog killed it."""

    deadline: float
    order: int
    process: subprocess.Popen[str] = field(compare=False)
    done: bool = field(default=False, compare=False)
    expired: bool = field(default=False, compare=False)


class Watchdog:
    """Deadlines for many processes, enforced by a single daemon thread."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[Watch] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, process: subprocess.Popen[str], limit: float) -> Watch:
        """Kill ``process`` after ``limit`` seconds unless release() comes first."""
        entry = Watch(time.monotonic() + limit, next(self._order), process)
        with self._condition:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hpcbridge-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:
                self._condition.notify()  # it sleeps until a later deadline; wake it sooner
        return entry

    def release(self, entry: Watch) -> None:
        """The process ended on its own; forget it."""
        with self._condition:
            entry.done = True

    def _run(self) -> None:
        with self._condition:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._condition.wait()
                    continue
                remaining = self._heap[0].deadline - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)
                    continue
                entry = heapq.heappop(self._heap)
                entry.expired = True
                entry.process.kill()


WATCHDOG = Watchdog()
