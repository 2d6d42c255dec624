"""The PBS sources: "pbs-log" reads the daily accounting logs, "pbs-qstat" the job history.

pbs-log reads server_priv/accounting/YYYYMMDD, one file per day of the server's clock, with
``cat`` through the transport, so it works over SSH too; a day without a file is a day without
records. Windows are those days, in the server's time zone; today's is incomplete, so the sync
reads it again next time. There is no overlap: a finished day's file no longer changes. Each
fetch also reads ``context_days`` earlier files, only to learn what came before the window (a
job queued yesterday and started today is numbered from yesterday's Q record); attempts they
end belong to the earlier window and are not returned. Numbering is backends.pbs.accounting's:
E and R records carry run_count, exact whichever files are read. A run still going whose job
has no Q, E or R record in the files read cannot be numbered and is left out until its E or R
record numbers it. A deletion of such a job is kept, numbered as if the job never ran before:
wrong only for a job rerun more than ``context_days`` before being deleted while queued again.

pbs-qstat is for users who cannot read the logs: one ``qstat -x -f -t`` lists every job the
server still keeps (job_history_duration, two weeks by default), as one attempt per job, its
latest run, numbered by run_count. Earlier runs of a rerun job are not in qstat and are lost.
The source has one window, from the watermark less an overlap to now, and returns the jobs
pending, running or ending in it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from hpcbridge.backends.commands import SchedulerCommands
from hpcbridge.backends.pbs import cli
from hpcbridge.backends.pbs.accounting import Attempt, attempts, prefixed, read_records
from hpcbridge.backends.pbs.backend import ERRORS, UTC_ENV
from hpcbridge.backends.pbs.parse import (
    account_of,
    as_int,
    duration_seconds,
    exec_hosts,
    exit_fields,
    is_array_parent,
    job_info,
    parse_qstat_json,
    parse_qstat_text,
    qstat_time,
    size_megabytes,
    split_subjob,
)
from hpcbridge.errors import SchedulerError
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.sources.base import Window
from hpcbridge.transports.base import Transport

DEFAULT_ACCOUNTING_DIR = "/var/spool/pbs/server_priv/accounting"
_MISSING_FILE = "No such file or directory"


class PbsLogSource:
    """Attempts from PBS's daily accounting logs (E, R, D and A records; S for running jobs)."""

    name = "pbs-log"

    def __init__(
        self,
        transport: Transport,
        *,
        accounting_dir: str = DEFAULT_ACCOUNTING_DIR,
        server_tz: tzinfo | None = None,
        first_sync: timedelta = timedelta(days=30),
        context_days: int = 1,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        """``server_tz``: the zone of the server's clock, which names the files and stamps the
        records; None means this machine's zone."""
        self.commands = SchedulerCommands(transport, ERRORS, attempts=attempts, backoff=backoff)
        self.accounting_dir = accounting_dir
        self.server_tz = server_tz
        self.first_sync = first_sync
        self.context_days = context_days

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        """One window per server day from the watermark's day (first sync: ``first_sync``
        before now) to today, which ends at ``now`` and is incomplete."""
        day = self._day(read_until if read_until is not None else now - self.first_sync)
        windows = []
        while (start := self._midnight(day)) < now:
            end = self._midnight(day + timedelta(days=1))
            windows.append(Window(start, min(end, now), end <= now))
            day += timedelta(days=1)
        return windows

    def fetch(self, window: Window) -> list[AttemptRecord]:
        """The attempts that the window's day files end, and the runs going on in them."""
        first, last = self._day(window.start), self._day(window.end - timedelta(microseconds=1))
        days = [
            first + timedelta(days=n) for n in range(-self.context_days, (last - first).days + 1)
        ]
        lines = (line for day in days for line in self._read(day).split("\n"))
        report_from = window.start.astimezone(self.server_tz).replace(tzinfo=None)
        found = attempts(read_records(lines), tz=self.server_tz, report_from=report_from)
        return _unique(_log_record(a) for a in found if a.number_known or a.end is not None)

    def _read(self, day: date) -> str:
        path = posixpath.join(self.accounting_dir, day.strftime("%Y%m%d"))
        try:
            return self.commands.run(["cat", path]).stdout
        except SchedulerError as exc:
            if _MISSING_FILE in exc.stderr:
                return ""
            raise SchedulerError(
                f"cannot read the PBS accounting log {path}; where the logs are not readable, "
                "use the pbs-qstat source",
                argv=exc.argv,
                returncode=exc.returncode,
                stderr=exc.stderr,
            ) from exc

    def _day(self, moment: datetime) -> date:
        return moment.astimezone(self.server_tz).date()

    def _midnight(self, day: date) -> datetime:
        """The start of a server day, in UTC (a naive time is taken as this machine's)."""
        return datetime(day.year, day.month, day.day, tzinfo=self.server_tz).astimezone(UTC)


class PbsQstatSource:
    """Attempts from ``qstat -x``: the latest run of every job the server keeps in history."""

    name = "pbs-qstat"

    def __init__(
        self,
        transport: Transport,
        *,
        json_output: bool = True,
        overlap: timedelta = timedelta(hours=1),
        first_sync: timedelta = timedelta(days=14),
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        """``json_output``: False for a qstat without ``-F json`` (as the backend's option)."""
        self.commands = SchedulerCommands(transport, ERRORS, attempts=attempts, backoff=backoff)
        self.json_output = json_output
        self.overlap = overlap
        self.first_sync = first_sync

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        """One window from the watermark less ``overlap`` (first sync: ``first_sync`` before
        now) to now: each fetch lists every job anyway, so smaller windows would only repeat
        the same qstat call."""
        start = read_until - self.overlap if read_until is not None else now - self.first_sync
        return [Window(start, now, True)] if start < now else []

    def fetch(self, window: Window) -> list[AttemptRecord]:
        """Every job pending or running now, or that ended in the window; array parents left
        out, their subjobs are the runs."""
        argv = cli.qstat_all(json=self.json_output, history=True)
        stdout = self.commands.run(argv, env=UTC_ENV, missing_ok=True).stdout
        jobs = parse_qstat_json(stdout) if self.json_output else parse_qstat_text(stdout)
        records = (
            _qstat_record(job_id, values)
            for job_id, values in jobs.items()
            if not is_array_parent(values)
        )
        return _unique(record for record in records if _active_in(record, window))


def _log_record(attempt: Attempt) -> AttemptRecord:
    job_id, index = split_subjob(attempt.job_id)
    code, signal = exit_fields(attempt.exit_status)
    return AttemptRecord(
        job_id=job_id,
        attempt=attempt.attempt,
        state=attempt.state,
        array_index=NOT_AN_ARRAY if index is None else index,
        name=attempt.name,
        user=attempt.user,
        account=attempt.account,
        partition=attempt.queue,
        submit=attempt.submit,
        eligible=attempt.eligible,
        start=attempt.start,
        end=attempt.end,
        exit_code=code,
        exit_signal=signal,
        node_list=exec_hosts(attempt.exec_host),
        **_resources(attempt.resource_list, attempt.resources_used, attempt.start, attempt.end),
    )


def _qstat_record(job_id: str, values: Mapping[str, Any]) -> AttemptRecord:
    """The job's latest run; a job queued, or deleted before it (re)ran, is its next attempt."""
    info = job_info(job_id, values)
    runs = as_int(values.get("run_count")) or 0
    ran = info.state is not JobState.PENDING and (
        not info.state.is_terminal or as_int(values.get("Exit_status")) is not None
    )
    start = info.start_time if ran else None
    end = info.end_time or (qstat_time(values.get("mtime")) if info.state.is_terminal else None)
    array_job, index = split_subjob(job_id)
    return AttemptRecord(
        job_id=array_job,
        attempt=max(runs, 1) if ran else runs + 1,
        state=info.state,
        array_index=NOT_AN_ARRAY if index is None else index,
        name=info.name,
        user=str(values.get("Job_Owner", "")).split("@", 1)[0] or None,
        account=account_of(values),
        partition=info.partition,
        submit=info.submit_time,
        eligible=qstat_time(values.get("etime")),
        start=start,
        end=end,
        exit_code=info.exit_code,
        exit_signal=info.exit_signal,
        reason=info.reason,
        node_list=info.nodes if ran else None,
        **_resources(
            prefixed(values, "Resource_List."), prefixed(values, "resources_used."), start, end
        ),
    )


def _resources(
    wanted: Mapping[str, Any],
    used: Mapping[str, Any],
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    """The request (Resource_List, which PBS allocates exactly) and resources_used as
    AttemptRecord fields; a run's elapsed time is its used walltime, a job that never ran
    has none."""
    elapsed = duration_seconds(used.get("walltime"))
    if elapsed is None and end is not None:
        elapsed = int((end - start).total_seconds()) if start is not None else 0
    memory = size_megabytes(wanted.get("mem"))
    return {
        "elapsed_s": elapsed,
        "node_count": as_int(wanted.get("nodect")),
        "alloc_cpus": as_int(wanted.get("ncpus")),
        "alloc_gpus": as_int(wanted.get("ngpus", 0)),
        "tres": wanted.get("select"),
        "req_walltime_s": duration_seconds(wanted.get("walltime")),
        "req_mem_mb": None if memory is None else int(memory),
        "max_rss_mb": size_megabytes(used.get("mem")),
        "cpu_time_s": duration_seconds(used.get("cput")),
    }


def _active_in(record: AttemptRecord, window: Window) -> bool:
    """Pending, running or ending in the window: submitted before its end and not ended
    before its start (a job still queued or running has no end)."""
    began = record.submit or record.start
    if began is not None and began >= window.end:
        return False
    return record.end is None or record.end >= window.start


def _unique(records: Iterable[AttemptRecord]) -> list[AttemptRecord]:
    """Each natural key once, the last reading winning: an upsert batch must not hold a key
    twice (PostgreSQL refuses ON CONFLICT updating one row twice)."""
    found = {(r.job_id, r.array_index, r.attempt): r for r in records}
    return list(found.values())
