"""PBS accounting logs (server_priv/accounting/YYYYMMDD): records, then one row per attempt.

A rerun job starts (S) more than once and ends each run with R or E, so attempts are built
from the records in order rather than keyed by job id; nothing a rerun spent is lost. The
record layout is "MM/DD/YYYY HH:MM:SS;TYPE;JOB_ID;key=value ..." (PBS Professional
Administrator's Guide, "Accounting Log").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hpcbridge.backends.pbs.parse import finished_state
from hpcbridge.models import JobState

# A value runs to the next space unless it is double-quoted (job names with spaces).
_PAIR = re.compile(r'(\S+?)=("[^"]*"|\S*)')


@dataclass(frozen=True)
class AccountingRecord:
    """One line of an accounting log."""

    stamp: datetime
    kind: str
    job_id: str
    attributes: dict[str, str]
    message: str


@dataclass
class Attempt:
    """One run of a job (or a deletion before any run), from its S record to its end."""

    job_id: str
    attempt: int
    state: JobState
    name: str | None = None
    user: str | None = None
    account: str | None = None
    queue: str | None = None
    submit: datetime | None = None
    eligible: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    exit_status: int | None = None
    exec_host: str | None = None
    resource_list: dict[str, str] = field(default_factory=dict)
    resources_used: dict[str, str] = field(default_factory=dict)


def parse_line(line: str) -> AccountingRecord | None:
    """A record, or None for a blank or malformed line (logs cut short by a crash)."""
    parts = line.rstrip("\n").split(";", 3)
    if len(parts) != 4:
        return None
    stamp_text, kind, job_id, message = parts
    stamp = _stamp(stamp_text)
    if stamp is None:
        return None
    if '"' in message:
        attributes = {key: value.strip('"') for key, value in _PAIR.findall(message)}
    else:  # the common case, several times faster than the regular expression
        try:
            attributes = dict(item.split("=", 1) for item in message.split())
        except ValueError:  # free text, as in A records
            attributes = {}
    return AccountingRecord(stamp, kind, job_id, attributes, message)


def _stamp(text: str) -> datetime | None:
    """ "MM/DD/YYYY HH:MM:SS" by position: strptime costs more than the rest of a record."""
    if len(text) != 19 or text[2] != "/" or text[5] != "/" or text[10] != " ":
        return None
    try:
        return datetime(
            int(text[6:10]),
            int(text[0:2]),
            int(text[3:5]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
        )
    except ValueError:
        return None


def read_records(lines: Iterable[str]) -> Iterator[AccountingRecord]:
    """Stream records from log lines, skipping the unreadable ones."""
    for line in lines:
        record = parse_line(line)
        if record is not None:
            yield record


def attempts(records: Iterable[AccountingRecord]) -> Iterator[Attempt]:
    """One Attempt per run, in the order runs end; unfinished runs come last, as RUNNING.

    Records that say nothing about how much a job ran (Q queued, a qalter, z/r suspend and
    resume) are read but make no attempt of their own.
    """
    running: dict[str, Attempt] = {}
    runs: dict[str, int] = {}
    deleted: set[str] = set()
    for record in records:
        job_id = record.job_id
        if record.kind == "S":
            runs[job_id] = runs.get(job_id, 0) + 1
            running[job_id] = _attempt(record, runs[job_id], JobState.RUNNING)
        elif record.kind in {"E", "R"}:
            attempt = running.pop(job_id, None) or _attempt(
                record, runs.get(job_id, 1), JobState.RUNNING
            )
            yield _ended(attempt, record, deleted_by_user=job_id in deleted)
            deleted.discard(job_id)
        elif record.kind in {"D", "A"}:
            if job_id in running:
                deleted.add(job_id)  # its E record follows once the job is killed
            else:
                never_ran = _attempt(record, runs.get(job_id, 0) + 1, JobState.CANCELLED)
                never_ran.end = _utc(record.stamp)
                yield never_ran
    yield from running.values()


def _attempt(record: AccountingRecord, number: int, state: JobState) -> Attempt:
    values = record.attributes
    return Attempt(
        job_id=record.job_id,
        attempt=number,
        state=state,
        name=values.get("jobname"),
        user=values.get("user"),
        account=values.get("account") or values.get("project"),
        queue=values.get("queue"),
        submit=_epoch(values.get("qtime") or values.get("ctime")),
        eligible=_epoch(values.get("etime")),
        start=_epoch(values.get("start")),
        exec_host=values.get("exec_host"),
        resource_list=_prefixed(values, "Resource_List."),
    )


def _ended(attempt: Attempt, record: AccountingRecord, *, deleted_by_user: bool) -> Attempt:
    values = record.attributes
    status = values.get("Exit_status")
    attempt.exit_status = int(status) if status and status.lstrip("-").isdigit() else None
    attempt.end = _epoch(values.get("end")) or _utc(record.stamp)
    attempt.start = attempt.start or _epoch(values.get("start"))
    attempt.resources_used = _prefixed(values, "resources_used.")
    attempt.resource_list = attempt.resource_list or _prefixed(values, "Resource_List.")
    if record.kind == "R":
        attempt.state = JobState.REQUEUED
    elif deleted_by_user:
        attempt.state = JobState.CANCELLED
    else:
        attempt.state = finished_state(attempt.exit_status)
    return attempt


def _prefixed(values: dict[str, str], prefix: str) -> dict[str, str]:
    cut = len(prefix)
    return {key[cut:]: value for key, value in values.items() if key[:cut] == prefix}


def _epoch(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value and value.isdigit() else None


def _utc(stamp: datetime) -> datetime:
    """Record stamps are in the server's local time; taken here as the reader's local time."""
    return stamp.astimezone(UTC)
