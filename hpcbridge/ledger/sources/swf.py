"""Standard Workload Format (SWF) traces as ledger attempts, streamed line by line.

SWF v2.2 is the format of the Parallel Workloads Archive
(https://www.cs.huji.ac.il/labs/parallel/workload/swf.html): header comments start with ``;``
and every other line is one job of 18 whitespace-separated numbers, -1 meaning unknown. Real
traces are imported so reports and forecasts can be developed and checked on years of
production accounting, not only on what a test cluster produced.

How the fields become an :class:`AttemptRecord` (numbers are SWF field numbers):

- times: ``; UnixStartTime:`` is the epoch second of offset 0, so submit = start time + (2),
  start = submit + wait (3), end = start + run time (4). The deprecated ``; TimeZone:`` header
  only shifts times for *local* display, so UTC needs nothing from it.
- 5 allocated processors -> ``alloc_cpus``, falling back to 8 requested processors when
  unknown (the archive's own advice for computing core-hours).
- 6 and 7 are averages *per processor* (CPU seconds, kilobytes), so ``cpu_time_s`` = (6) x
  processors and ``max_rss_mb`` = (7) x processors / 1024: the job's memory, an average over
  its run rather than a peak, which is the closest SWF comes. 10 (requested memory, KB per
  processor) x 8 gives ``req_mem_mb``; 9 is ``req_walltime_s``.
- 11 status -> ``state`` through _STATES (an undefined code: UNKNOWN, with a warning);
  12 user -> ``u<id>``; 13 group -> account ``g<id>`` (SWF groups stand for the projects
  charged); 15 queue -> ``partition``, by the name from a ``; Queue: N name`` header.
- A run time of -1 marks a job cancelled before it ran. Its wait time, where known, is how
  long it queued until then, so it becomes a run of no length at that moment (start = end =
  submit + wait, ``elapsed_s`` 0), as ``sacct`` records a job cancelled while pending: the
  queue at any moment can then be read from the ledger (forecasts use it). With the wait
  unknown too, start and end stay unknown (a start without an end would read as a job
  still running).
- A wait time of -1 with a known run time and processor count (HPC2N job 149728) is a job
  that ran, at an unknown moment: it is charged all the same, placed at its submit time
  (start = submit, end = submit + run time), with :data:`AT_SUBMIT` as its ``reason`` and
  counted in :attr:`SwfTrace.placed_at_submit` for the caller to report. Its wait then reads
  as zero in wait statistics, the one figure this placement makes up.
- The run time (4) is what the attempt is charged (``elapsed_s``); start and end only place
  it in time.
- A checkpointed or swapped job is several lines with one job number: status 2 ("partial
  execution, will be continued") for each interrupted run, then 3 or 4 for the last. They
  become attempts 1, 2, ... of that job, in file order, as a requeued Slurm job would. A
  summary line for the whole job besides them (same number, status 0, 1 or 5), where a
  trace has one, is not told apart: as attempt 1 it replaces or is replaced by the first
  partial run, whichever comes later in the file.

A malformed line is not imported and not silently dropped: each is kept in
:attr:`SwfTrace.bad_lines` with its number and the field at fault, for the caller to report.
More than ``max_bad_lines`` of them means the file is not the trace it claims to be, and
reading stops with a :class:`~hpcbridge.errors.TraceError`.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hpcbridge.errors import TraceError
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.state import JobState

if TYPE_CHECKING:
    from hpcbridge.ledger.store import Ledger

AT_SUBMIT = "wait time unknown (-1) in the trace: placed at the submit time"
"""The ``reason`` of an attempt whose wait the trace does not know (see the module doc)."""

SOURCE = "swf"
"""The ledger's name for this source, and the scheduler recorded for clusters from traces."""

FIELDS = (
    "job number",
    "submit time",
    "wait time",
    "run time",
    "allocated processors",
    "average CPU time",
    "used memory",
    "requested processors",
    "requested time",
    "requested memory",
    "status",
    "user id",
    "group id",
    "executable number",
    "queue number",
    "partition number",
    "preceding job",
    "think time",
)
"""The 18 fields of a job line, in order (SWF v2.2, "The Data Fields")."""

# Field 11, SWF v2.2: "1 if the job was completed, 0 if it failed, and 5 if cancelled";
# with checkpointing or swapping, 2 "partial execution, will be continued", 3 "last partial
# execution, job completed", 4 "last partial execution, job failed".
_STATES = {
    -1: JobState.UNKNOWN,
    0: JobState.FAILED,
    1: JobState.COMPLETED,
    2: JobState.PREEMPTED,
    3: JobState.COMPLETED,
    4: JobState.FAILED,
    5: JobState.CANCELLED,
}
_PARTIAL = 2

# Fields that must be whole numbers (0-based): job, processors, status, ids and numbers.
_WHOLE = (0, 4, 7, 10, 11, 12, 13, 14, 15, 16)
# Above this a value is corrupt, not a job: 317 years of seconds, 10 TB per processor in
# kilobytes. It also keeps every time a datetime can hold.
_TOO_BIG = 1e10
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER = re.compile(r";\s*(\w+)\s*:\s*(.*)")
_QUEUE = re.compile(r"(-?\d+)\s+(\S+)")
_SHOWN_BAD_LINES = 5

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A job line that was not imported, and why (the field and value at fault)."""

    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


class SwfTrace:
    """One SWF file (plain or gzip), read lazily; iterate :meth:`records` once.

    Memory stays bounded whatever the trace's length: one line at a time, plus the queue
    names and the job numbers of checkpointed jobs whose last run has not been read yet.
    """

    def __init__(self, path: str | Path, *, max_bad_lines: int = 100) -> None:
        self.path = Path(path)
        self.max_bad_lines = max_bad_lines
        self.bad_lines: list[BadLine] = []
        self.records_read = 0
        self.placed_at_submit = 0
        self.total_bytes = self._size()
        self._raw: IO[bytes] | None = None
        self._epoch: int | None = None
        self._queues: dict[int, str] = {}
        self._open_partials: dict[str, int] = {}
        self._unknown_statuses: set[int] = set()

    @property
    def cluster_name(self) -> str:
        """The name a trace's jobs are filed under by default: the file's, less .gz and .swf."""
        name = self.path.name
        for suffix in (".gz", ".swf"):
            name = name.removesuffix(suffix)
        return name

    @property
    def bytes_read(self) -> int:
        """How far into the file (compressed bytes for gzip) reading has got: for progress."""
        if self._raw is None:
            return 0
        return self.total_bytes if self._raw.closed else self._raw.tell()

    def records(self) -> Iterator[AttemptRecord]:
        """The attempts of the trace in file order; malformed lines land in ``bad_lines``."""
        number = 0
        try:
            with self.path.open("rb") as raw, _text(raw) as text:
                self._raw = raw
                for number, line in enumerate(text, start=1):
                    if line.startswith(";"):
                        self._header(number, line)
                    elif line.strip():
                        record = self._job(number, line)
                        if record is not None:
                            self.records_read += 1
                            yield record
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceError(f"{self.path}: cannot read past line {number}: {exc}") from exc

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError as exc:
            raise TraceError(f"cannot read the trace {self.path}: {exc.strerror}") from exc

    def _header(self, number: int, line: str) -> None:
        match = _HEADER.match(line)
        if match is None:
            return  # a continuation or free-text comment
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "unixstarttime":
            try:
                self._epoch = int(value)
                _moment(self._epoch)
            except ValueError:
                raise TraceError(
                    f"{self.path}: line {number}: UnixStartTime {value!r} is not a whole number "
                    "of seconds since the epoch within the calendar"
                ) from None
        elif key == "queue" and (queue := _QUEUE.match(value)):
            self._queues[int(queue.group(1))] = queue.group(2)

    def _job(self, number: int, line: str) -> AttemptRecord | None:
        if self._epoch is None:
            raise TraceError(
                f"{self.path}: line {number}: a job line before any '; UnixStartTime:' header; "
                "SWF times are seconds from that start, so they cannot be placed in time"
            )
        try:
            return self._attempt(number, line.split(), self._epoch)
        except ValueError as exc:
            self._bad(BadLine(number, str(exc)))
            return None

    def _bad(self, bad: BadLine) -> None:
        self.bad_lines.append(bad)
        if len(self.bad_lines) > self.max_bad_lines:
            shown = "; ".join(str(b) for b in self.bad_lines[:_SHOWN_BAD_LINES])
            raise TraceError(
                f"{self.path}: more than {self.max_bad_lines} malformed job lines, so this is "
                f"probably not an SWF trace (first: {shown})"
            )

    def _attempt(self, number: int, fields: list[str], epoch: int) -> AttemptRecord:
        """One job line as an attempt; ValueError names the field that is wrong."""
        values = _numbers(fields)
        job, submit, wait, run, alloc, cpu, mem, req, req_time, req_mem, status = values[:11]
        job_id = str(int(job))
        if job < 0:
            raise ValueError(f"field 1 ({FIELDS[0]}) is unknown (-1); a job needs its number")
        state = self._state(int(status), number)
        procs = alloc if alloc >= 0 else req
        req_procs = req if req >= 0 else alloc
        submit_at = start_at = end_at = None
        reason = None
        if submit >= 0:
            submit_at = epoch + round(submit)
            if wait >= 0:
                start_at = submit_at + round(wait)
                end_at = start_at + round(max(run, 0))
            elif run >= 0 and procs >= 0:
                start_at, end_at, reason = submit_at, submit_at + round(run), AT_SUBMIT
        queue = int(values[14])
        record = AttemptRecord(
            job_id=job_id,
            attempt=self._attempt_number(job_id, int(status)),
            state=state,
            user=_named("u", values[11]),
            account=_named("g", values[12]),
            partition=None if queue < 0 else self._queues.get(queue, str(queue)),
            submit=_moment(submit_at),
            start=_moment(start_at),
            end=_moment(end_at),
            elapsed_s=round(run) if run >= 0 else 0 if start_at is not None else None,
            reason=reason,
            alloc_cpus=int(procs) if procs >= 0 else None,
            req_walltime_s=round(req_time) if req_time >= 0 else None,
            req_mem_mb=round(req_mem * req_procs / 1024)
            if req_mem >= 0 and req_procs >= 0
            else None,
            max_rss_mb=mem * procs / 1024 if mem >= 0 and procs >= 0 else None,
            cpu_time_s=cpu * procs if cpu >= 0 and procs >= 0 else None,
        )
        self.placed_at_submit += reason is not None
        return record

    def _state(self, status: int, number: int) -> JobState:
        """The state of an SWF status; an undefined one is UNKNOWN, warned about once."""
        state = _STATES.get(status)
        if state is not None:
            return state
        if status not in self._unknown_statuses:
            self._unknown_statuses.add(status)
            log.warning(
                "%s: line %d: status %d is not an SWF status; stored as UNKNOWN "
                "(later lines with it are not reported)",
                self.path,
                number,
                status,
            )
        return JobState.UNKNOWN

    def _attempt_number(self, job_id: str, status: int) -> int:
        """1 for an ordinary job; 1, 2, ... for the partial runs of a checkpointed one."""
        earlier = self._open_partials.pop(job_id, 0)
        if status == _PARTIAL:
            self._open_partials[job_id] = earlier + 1
        return earlier + 1


def import_swf(
    ledger: Ledger,
    trace: SwfTrace,
    *,
    cluster: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Upsert every attempt of ``trace`` under ``cluster`` (default: the file's name).

    Returns the rows written; ``trace.bad_lines`` then lists what was not imported. Running
    it again rewrites the same rows, so an import cut short can simply be repeated.
    """
    return ledger.upsert_attempts(
        cluster or trace.cluster_name, SOURCE, trace.records(), source=SOURCE, progress=progress
    )


def _text(raw: io.BufferedReader) -> IO[str]:
    """Text lines of a file, through gzip when it starts with gzip's magic bytes.

    SWF is ASCII; a stray byte in a comment must not stop an import, and one in a job line
    makes that line fail to parse, where it is reported.
    """
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="ascii", errors="replace")
    return io.TextIOWrapper(raw, encoding="ascii", errors="replace")


def _numbers(fields: list[str]) -> list[float]:
    """The 18 fields as numbers, each whole where it must be and -1 or >= 0."""
    if len(fields) != len(FIELDS):
        raise ValueError(f"{len(fields)} fields, an SWF job line has {len(FIELDS)}")
    try:
        values = [float(field) for field in fields]
    except ValueError:
        index = next(i for i, field in enumerate(fields) if not _is_number(field))
        raise ValueError(
            f"field {index + 1} ({FIELDS[index]}) {fields[index]!r} is not a number"
        ) from None
    for index, value in enumerate(values):
        # NaN fails every comparison; negatives other than -1 are corrupt, and so is the huge.
        if value == -1 or 0 <= value <= _TOO_BIG:
            continue
        problem = "is implausibly large" if value > _TOO_BIG else "is out of range"
        raise ValueError(
            f"field {index + 1} ({FIELDS[index]}) {fields[index]!r} {problem} "
            "(-1 for unknown, else 0 or more)"
        )
    for index in _WHOLE:
        if not values[index].is_integer():
            raise ValueError(
                f"field {index + 1} ({FIELDS[index]}) {fields[index]!r} is not a whole number"
            )
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _named(prefix: str, value: float) -> str | None:
    return None if value < 0 else f"{prefix}{int(value)}"


def _moment(epoch: int | None) -> datetime | None:
    """A time of the trace; ValueError (a bad line, or a bad header) when it lies outside
    the calendar, as a hostile or garbled trace's may."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time {epoch} is outside the calendar") from exc
