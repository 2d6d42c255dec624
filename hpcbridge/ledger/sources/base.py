"""What the ledger sync reads scheduler accounting through: sources that yield AttemptRecords.

A source splits the time since the ledger's watermark into bounded windows and fetches each;
the sync upserts what a window yields and moves the watermark to the end of the last window
that was complete. Implementations: slurm_source.SacctSource ("sacct"),
pbs_source.PbsLogSource ("pbs-log") and pbs_source.PbsQstatSource ("pbs-qstat").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from hpcbridge.jobs.records import AttemptRecord


class Window(NamedTuple):
    """The half-open span [start, end) of aware UTC datetimes that one fetch covers.

    ``complete`` is False while the data for the span may still grow (today's PBS log): the
    sync does not move its watermark past ``start`` then, so the span is read again next time.
    """

    start: datetime
    end: datetime
    complete: bool


class AccountingSource(Protocol):
    """Scheduler accounting turned into AttemptRecords, one bounded window at a time."""

    name: str  # "sacct" | "pbs-log" | "pbs-qstat": job_attempts.source, the watermark's key

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        """Windows from the watermark ``read_until`` (less an overlap) up to ``now``, in order;
        on a first sync (no watermark) from a configured time before ``now``."""
        ...

    def fetch(self, window: Window) -> list[AttemptRecord]:
        """Every attempt pending, running or ending in the window, each under the attempt
        number it will always have, each natural key once."""
        ...


def spans(start: datetime, end: datetime, size: timedelta) -> list[Window]:
    """[start, end) cut into complete windows of at most ``size``; none when start >= end."""
    windows = []
    while start < end:
        stop = min(start + size, end)
        windows.append(Window(start, stop, True))
        start = stop
    return windows
