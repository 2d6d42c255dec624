"""Accounting of the local backend (the embedded default): its job records, read in place.

The local backend keeps one record per job or array task and rewrites it when the job is
requeued, so only a job's latest run can be read: its attempt number is its restart count
plus one, and the runs before it are not in the ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hpcbridge.backends.local import store as st
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.sources.base import Window

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LocalSource:
    """Every local job that was unfinished or ended since the watermark, in one window."""

    name = "local"

    def __init__(self, state_dir: Path, *, overlap: timedelta = timedelta(minutes=10)) -> None:
        self.store = st.Store(state_dir)
        self.overlap = overlap

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        """One window: reading a local store costs the same whatever the range."""
        start = read_until - self.overlap if read_until else _EPOCH
        return [Window(start, now, complete=True)]

    def fetch(self, window: Window) -> list[AttemptRecord]:
        """Attempts that ended inside the window, and every unfinished one."""
        since = window.start.timestamp()
        attempts = []
        for job in self.store.job_numbers():
            meta = self.store.read_meta(job)
            if meta is None:  # a submission still being written
                continue
            for stored in self.store.members(str(job)):
                record = st.effective(stored)
                if record["end"] is None or record["end"] >= since:
                    attempts.append(_attempt(record, meta))
        return attempts


def _attempt(record: st.Record, meta: st.JobMeta) -> AttemptRecord:
    start, end = _time(record["start"]), _time(record["end"])
    return AttemptRecord(
        job_id=str(record["job"]),
        array_index=NOT_AN_ARRAY if record["index"] is None else record["index"],
        attempt=record["restarts"] + 1,
        state=JobState(record["state"]),
        name=record["name"],
        user=meta.get("user"),
        account=record["account"],
        partition=record["partition"],
        submit=_time(record["submit"]),
        start=start,
        end=end,
        elapsed_s=int((end - start).total_seconds()) if start and end else None,
        exit_code=record["exit_code"],
        exit_signal=record["exit_signal"],
        reason=record["reason"],
        node_list=record["node"],
        node_count=1 if start else None,
        alloc_cpus=meta.get("cpus") if start else None,
        alloc_gpus=meta.get("gpus") if start else None,
        req_walltime_s=meta["walltime"],
        req_mem_mb=meta.get("memory_mb"),
    )


def _time(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)
