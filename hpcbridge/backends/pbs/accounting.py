"""PBS accounting logs (server_priv/accounting/YYYYMMDD): records, then one row per attempt.

A rerun job starts (S) more than once and ends each run with R or E, so attempts are built
from the records in order rather than keyed by job id; nothing a rerun spent is lost. E and R
records carry run_count, which numbers each run the same whichever day files are read. The
record layout is "MM/DD/YYYY HH:MM:SS;TYPE;JOB_ID;key=value ..." (PBS Professional
Administrator's Guide, "Accounting Log").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from hpcbridge.backends.pbs.parse import account_of, as_int, finished_state
from hpcbridge.jobs.state import JobState
from hpcbridge.jobs.units import is_decimal

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
    number_known: bool = True  # False: the number is a guess (see attempts)


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


def attempts(
    records: Iterable[AccountingRecord],
    *,
    tz: tzinfo | None = None,
    report_from: datetime | None = None,
) -> Iterator[Attempt]:
    """One Attempt per run, in the order runs end, then deletions that only the end of the
    stream can tell apart, then jobs still queued, as PENDING, then unfinished runs, as RUNNING.

    Numbers. E and R records carry run_count, which numbers their run exactly whichever files
    were read: a run that starts in one day's file and ends in the next gets the same number
    from either. A run not ended in the stream, or a job deleted before it (re)ran, is numbered
    from what the stream shows: its runs counted since its Q record or its last E or R. With
    neither in view the number is a guess (the runs seen, plus one) and ``number_known`` is
    False; such a deletion is held to the end of the stream, since a running job's D record is
    followed by its E.

    Array parents ("10[].server") make no attempt: their subjobs are the runs, and an array
    deleted before any subjob started has none. Records that say nothing about how much a job
    ran (a qalter, z/r suspend and resume) make no attempt either. Record stamps are in the
    server's time zone ``tz`` (None: this machine's); records stamped before ``report_from``
    (a naive time in that zone) only tell what came before: attempts they end are not yielded.
    """
    running: dict[str, Attempt] = {}
    runs: dict[str, int] = {}  # how many times each job has run, as far as the stream shows
    in_view: set[str] = set()  # jobs whose earlier runs are all known: Q, E or R seen
    queued: dict[str, AccountingRecord] = {}  # Q records of jobs not started: a deletion's facts
    deleted: dict[str, AccountingRecord] = {}  # D/A of running jobs, and of jobs not in view
    for record in records:
        job_id = record.job_id
        if "[]" in job_id:
            continue
        reported = report_from is None or record.stamp >= report_from
        if record.kind == "Q":
            in_view.add(job_id)
            queued[job_id] = record
        elif record.kind == "S":
            runs[job_id] = runs.get(job_id, 0) + 1
            queued.pop(job_id, None)
            running[job_id] = _attempt(record, runs[job_id], JobState.RUNNING, job_id in in_view)
        elif record.kind in {"E", "R"}:
            attempt = running.pop(job_id, None) or _attempt(
                record, runs.get(job_id, 1), JobState.RUNNING, job_id in in_view
            )
            run_count = as_int(record.attributes.get("run_count"))
            if run_count:
                attempt.attempt, attempt.number_known = run_count, True
                runs[job_id] = run_count
                in_view.add(job_id)
            ended = _ended(attempt, record, tz, deleted_by_user=job_id in deleted)
            deleted.pop(job_id, None)
            if reported:
                yield ended
        elif record.kind in {"D", "A"}:
            if job_id in running or job_id not in in_view:
                deleted[job_id] = record
                continue
            never_ran = _never_ran(record, queued.pop(job_id, None), runs.get(job_id, 0) + 1, tz)
            if reported:
                yield never_ran
    for job_id, record in deleted.items():
        if job_id not in running and (report_from is None or record.stamp >= report_from):
            yield _never_ran(record, None, runs.get(job_id, 0) + 1, tz, number_known=False)
    for job_id, record in queued.items():
        yield _attempt(record, runs.get(job_id, 0) + 1, JobState.PENDING, True)
    yield from running.values()


def _attempt(record: AccountingRecord, number: int, state: JobState, known: bool) -> Attempt:
    values = record.attributes
    return Attempt(
        job_id=record.job_id,
        attempt=number,
        state=state,
        name=values.get("jobname"),
        user=values.get("user"),
        account=account_of(values),
        queue=values.get("queue"),
        submit=_epoch(values.get("qtime") or values.get("ctime")),
        eligible=_epoch(values.get("etime")),
        start=_epoch(values.get("start")),
        exec_host=values.get("exec_host"),
        resource_list=prefixed(values, "Resource_List."),
        number_known=known,
    )


def _ended(
    attempt: Attempt, record: AccountingRecord, tz: tzinfo | None, *, deleted_by_user: bool
) -> Attempt:
    values = record.attributes
    status = values.get("Exit_status")
    attempt.exit_status = int(status) if status and is_decimal(status.lstrip("-")) else None
    attempt.end = _epoch(values.get("end")) or _utc(record.stamp, tz)
    attempt.start = attempt.start or _epoch(values.get("start"))
    attempt.resources_used = prefixed(values, "resources_used.")
    attempt.resource_list = attempt.resource_list or prefixed(values, "Resource_List.")
    if record.kind == "R":
        attempt.state = JobState.REQUEUED
    elif deleted_by_user:
        attempt.state = JobState.CANCELLED
    else:
        attempt.state = finished_state(attempt.exit_status)
    return attempt


def _never_ran(
    record: AccountingRecord,
    queued: AccountingRecord | None,
    number: int,
    tz: tzinfo | None,
    *,
    number_known: bool = True,
) -> Attempt:
    """A job deleted (D) or aborted (A) while queued: its facts from its Q record if seen."""
    attempt = _attempt(queued or record, number, JobState.CANCELLED, number_known)
    attempt.end = _utc(record.stamp, tz)
    return attempt


def prefixed(values: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The attributes under ``prefix`` ("Resource_List."), by their names after it."""
    cut = len(prefix)
    return {key[cut:]: value for key, value in values.items() if key[:cut] == prefix}


def _epoch(value: str | None) -> datetime | None:
    """Epoch seconds; "0" (etime of a job not yet eligible) is no time at all."""
    seconds = as_int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _utc(stamp: datetime, tz: tzinfo | None) -> datetime:
    """A record stamp, in the server's zone ``tz`` (None: this machine's), as UTC."""
    return (stamp if tz is None else stamp.replace(tzinfo=tz)).astimezone(UTC)
