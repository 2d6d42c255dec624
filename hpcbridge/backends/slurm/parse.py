"""Pure parsers of Slurm output, and the table from Slurm's state codes to JobState."""

from __future__ import annotations

import logging
import re
from collections.abc import Container, Iterator
from datetime import datetime

from hpcbridge.backends.slurm.cli import FIELD_SEPARATOR, SACCT_FIELDS, SQUEUE_FIELDS
from hpcbridge.errors import SchedulerError
from hpcbridge.jobs.state import JobInfo, JobState
from hpcbridge.jobs.units import is_decimal

log = logging.getLogger(__name__)
_GPU_TRES = "gres/gpu="

# squeue(1) and sacct(1), section "JOB STATE CODES" (Slurm 22.05). Both long and compact
# forms are listed so either output style parses. Held requeues and reservation holds are
# pending in all but name; a federation requeue is a requeue.
SLURM_STATES: dict[str, JobState] = {
    "BOOT_FAIL": JobState.BOOT_FAIL,
    "BF": JobState.BOOT_FAIL,
    "CANCELLED": JobState.CANCELLED,
    "CA": JobState.CANCELLED,
    "COMPLETED": JobState.COMPLETED,
    "CD": JobState.COMPLETED,
    "CONFIGURING": JobState.CONFIGURING,
    "CF": JobState.CONFIGURING,
    "COMPLETING": JobState.COMPLETING,
    "CG": JobState.COMPLETING,
    "DEADLINE": JobState.DEADLINE,
    "DL": JobState.DEADLINE,
    "FAILED": JobState.FAILED,
    "F": JobState.FAILED,
    "NODE_FAIL": JobState.NODE_FAIL,
    "NF": JobState.NODE_FAIL,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "OOM": JobState.OUT_OF_MEMORY,
    "PENDING": JobState.PENDING,
    "PD": JobState.PENDING,
    "PREEMPTED": JobState.PREEMPTED,
    "PR": JobState.PREEMPTED,
    "RUNNING": JobState.RUNNING,
    "R": JobState.RUNNING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RD": JobState.PENDING,
    "REQUEUE_FED": JobState.REQUEUED,
    "RF": JobState.REQUEUED,
    "REQUEUE_HOLD": JobState.REQUEUED,
    "RH": JobState.REQUEUED,
    "REQUEUED": JobState.REQUEUED,
    "RQ": JobState.REQUEUED,
    "RESIZING": JobState.RESIZING,
    "RS": JobState.RESIZING,
    "REVOKED": JobState.REVOKED,
    "RV": JobState.REVOKED,
    "SIGNALING": JobState.SIGNALING,
    "SI": JobState.SIGNALING,
    "SPECIAL_EXIT": JobState.SPECIAL_EXIT,
    "SE": JobState.SPECIAL_EXIT,
    "STAGE_OUT": JobState.STAGE_OUT,
    "SO": JobState.STAGE_OUT,
    "STOPPED": JobState.STOPPED,
    "ST": JobState.STOPPED,
    "SUSPENDED": JobState.SUSPENDED,
    "S": JobState.SUSPENDED,
    "TIMEOUT": JobState.TIMEOUT,
    "TO": JobState.TIMEOUT,
}

_EMPTY = {"", "N/A", "None", "Unknown", "(null)", "NONE"}


def slurm_state(code: str) -> JobState:
    """Map a state code; sacct writes "CANCELLED by 0", so only the first word counts."""
    word = code.split(" ", 1)[0].rstrip("+")
    state = SLURM_STATES.get(word)
    if state is None:
        log.warning("unknown Slurm job state %r; reported as UNKNOWN", code)
        return JobState.UNKNOWN
    return state


def parse_submit(stdout: str) -> str:
    """``sbatch --parsable`` prints "jobid" or "jobid;cluster"."""
    job_id = stdout.strip().split(";", 1)[0]
    if not is_decimal(job_id):
        raise SchedulerError(f"sbatch printed {stdout.strip()!r} instead of a job id")
    return job_id


def parse_max_array_size(stdout: str) -> int | None:
    """``scontrol show config``'s "MaxArraySize = N": an array's indices must be below N, so
    it holds at most N tasks (slurm.conf(5)); None if the line is missing."""
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and is_decimal(value.strip()):
            return int(value)
    return None


def parse_squeue(stdout: str, wanted: Container[str] | None = None) -> list[JobInfo]:
    """Rows of ``squeue --format`` built by cli.squeue; with ``wanted``, only the rows of
    those ids (a job, an array task, or an array as a whole), the rest skipped unparsed.

    One answer may hold thousands of rows, so this is the hot path of polling: the values
    are typed here and the models built without validating them again
    (JobInfo.from_scheduler), times and states are looked up once per distinct string.
    """
    infos = []
    width = len(SQUEUE_FIELDS)
    times: dict[str, datetime | None] = {}
    states: dict[str, tuple[JobState, bool, bool]] = {}  # code -> (state, pending, ended)
    # Only a line holding a character str.strip() removes (whitespace but the separator, or
    # anything not ASCII) pays for stripping each field: few do, and often none in the answer.
    padded = _may_pad(stdout)
    for line in stdout.split("\n"):
        fields = line.split(FIELD_SEPARATOR)
        if len(fields) != width:
            if not line.strip():
                continue
            raise SchedulerError(f"expected {width} fields from Slurm, got {len(fields)}: {line!r}")
        if padded and _may_pad(line):
            fields = [field.strip() for field in fields]
        job_id, array_id, task, name, state, reason, nodes, partition, account = fields[:9]
        if wanted is not None and job_id not in wanted and array_id not in wanted:
            continue
        submit, start, end = fields[9:12]
        known = states.get(state)
        if known is None:
            code = slurm_state(state)
            known = states[state] = (code, code is JobState.PENDING, code.is_terminal)
        parsed_state, pending, terminal = known
        if submit not in times:
            times[submit] = utc_time(submit)
        if pending:
            started = None
        elif start in times:
            started = times[start]
        else:
            started = times[start] = utc_time(start)
        if not terminal:
            ended = None
        elif end in times:
            ended = times[end]
        else:
            ended = times[end] = utc_time(end)
        in_array = task != "N/A" and is_decimal(task)
        infos.append(
            JobInfo.from_scheduler(
                job_id,
                parsed_state,
                state,
                name=name or None,
                reason=None if reason in _EMPTY else reason,
                nodes=None if nodes in _EMPTY else nodes,
                partition=None if partition in _EMPTY else partition,
                account=None if account in _EMPTY else account,
                submit_time=times[submit],
                start_time=started,
                end_time=ended,
                array_job_id=array_id if in_array else None,
                array_task_id=int(task) if in_array else None,
            )
        )
    return infos


def _may_pad(text: str) -> bool:
    """Whether ``text`` holds a character str.strip() would remove but the separator and
    newlines: a few scans in C, where a regular expression takes four times as long."""
    return (
        " " in text
        or "\t" in text
        or "\r" in text
        or "\x0b" in text
        or "\x0c" in text
        or "\x1c" in text
        or "\x1d" in text
        or "\x1e" in text
        or not text.isascii()
    )


def parse_sacct(stdout: str) -> list[JobInfo]:
    """Rows of ``sacct --parsable2`` built by cli.sacct."""
    infos = []
    for fields in _rows(stdout, len(SACCT_FIELDS)):
        job_id, _raw_id, name, state, exit_code, reason, nodes, partition, account = fields[:9]
        submit, start, end = fields[9:]
        code, _, signal = exit_code.partition(":")
        # Pending array tasks are one row, "1069_[2-3%1]": part of the array, no index yet.
        base, in_array, task = job_id.partition("_")
        infos.append(
            JobInfo.from_scheduler(
                job_id,
                slurm_state(state),
                state,
                name=name or None,
                reason=optional(reason),
                exit_code=int(code) if is_decimal(code) else None,
                exit_signal=int(signal) if is_decimal(signal) else None,
                nodes=optional(nodes.replace("None assigned", "")),
                partition=optional(partition),
                account=optional(account),
                submit_time=utc_time(submit),
                start_time=utc_time(start),
                end_time=utc_time(end),
                array_job_id=base if in_array else None,
                array_task_id=int(task) if is_decimal(task) else None,
            )
        )
    return infos


_KILL_ERROR = re.compile(r"Kill job error on job id (\S+): Invalid job id specified")


def unknown_cancelled_ids(stderr: str) -> list[str]:
    """Ids ``scancel --verbose`` reports as unknown; it still exits 0 for them."""
    return _KILL_ERROR.findall(stderr)


def parse_comments(stdout: str) -> dict[str, str]:
    """``squeue --format=%F<sep>%k``: job (or array) id to comment."""
    return {job_id: comment for job_id, comment in _rows(stdout, 2)}


def _rows(stdout: str, width: int) -> Iterator[list[str]]:
    for line in stdout.split("\n"):
        if not line.strip():
            continue
        fields = line.split(FIELD_SEPARATOR)
        if len(fields) != width:
            raise SchedulerError(f"expected {width} fields from Slurm, got {len(fields)}: {line!r}")
        yield [field.strip() for field in fields]


def optional(value: str) -> str | None:
    """None for the words Slurm prints when a field has no value ("None", "Unknown" ...)."""
    return None if value in _EMPTY else value


def tres_gpus(tres: str) -> int | None:
    """The GPU count in a TRES list ("billing=1,cpu=1,gres/gpu:a100=1,gres/gpu=1,mem=1G"): the
    untyped count; 0 when it lists none, None when nothing was allocated."""
    if not tres:
        return None
    at = tres.find(_GPU_TRES)
    if at < 0:
        return 0
    value = tres[at + len(_GPU_TRES) :].split(",", 1)[0]
    return int(value) if is_decimal(value) else None


def parse_job_tres(stdout: str) -> str:
    """TRES= of ``scontrol show job --oneliner`` (cli.scontrol_show_job): what a running job
    was allocated ("cpu=2,mem=1000M,node=1,billing=2,gres/gpu=2,gres/gpu:a100=2")."""
    for field in stdout.split():
        if field.startswith("TRES="):
            return field.removeprefix("TRES=")
    raise SchedulerError(f"scontrol show job printed no TRES=: {stdout.strip()[:200]!r}")


def utc_time(value: str) -> datetime | None:
    """A time printed under UTC_ENV ("2026-11-23T15:01:28"), or None for "Unknown" and such.

    Appending the zone is several times faster than ``.replace(tzinfo=UTC)``; ledger ingest
    parses four times per job.
    """
    if value[:1].isdigit():
        return datetime.fromisoformat(value + "+00:00")
    return None
