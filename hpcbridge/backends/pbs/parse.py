"""Pure parsers of PBS output, and the tables from PBS states and exit statuses to JobState."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from hpcbridge.errors import SchedulerError
from hpcbridge.jobs.state import JobInfo, JobState
from hpcbridge.jobs.units import is_decimal, parse_duration

log = logging.getLogger(__name__)

# PBS Professional Reference Guide, "Job States" (job_state letters); Torque's qstat adds C
# (completed, kept for keep_completed seconds). F, X and C are settled by Exit_status below.
PBS_STATES: dict[str, JobState] = {
    "B": JobState.RUNNING,  # array job: at least one subjob has started
    "E": JobState.COMPLETING,  # exiting after having run
    "H": JobState.PENDING,  # held (Hold_Types says by whom)
    "M": JobState.PENDING,  # moved to another server
    "Q": JobState.PENDING,  # queued, eligible to run or be routed
    "R": JobState.RUNNING,
    "S": JobState.SUSPENDED,  # suspended by the server or scheduler
    "T": JobState.PENDING,  # in transit to a new location
    "U": JobState.SUSPENDED,  # suspended because the workstation became busy
    "W": JobState.PENDING,  # waiting for its execution time (-a)
    "X": JobState.COMPLETED,  # subjob finished (expired)
    "F": JobState.COMPLETED,  # finished (job history)
    "C": JobState.COMPLETED,  # Torque: completed
}
_FINISHED_LETTERS = frozenset("FXC")

# OpenPBS src/include/job.h, "Special Job Exit Values" (JOB_EXEC_*), as documented in the PBS
# Professional Reference Guide, "Job Exit Status Codes". Values not listed are failures.
PBS_EXEC_STATUSES: dict[int, JobState] = {
    -1: JobState.BOOT_FAIL,  # JOB_EXEC_FAIL1: failed before files, no retry
    -2: JobState.BOOT_FAIL,  # JOB_EXEC_FAIL2: failed after files, no retry
    -3: JobState.REQUEUED,  # JOB_EXEC_RETRY: failed, will be retried
    -4: JobState.NODE_FAIL,  # JOB_EXEC_INITABT: aborted on MOM initialization
    -5: JobState.NODE_FAIL,  # JOB_EXEC_INITRST: aborted on MOM init, checkpoint, no migrate
    -6: JobState.NODE_FAIL,  # JOB_EXEC_INITRMG: aborted on MOM init, checkpoint, migrate
    -7: JobState.FAILED,  # JOB_EXEC_BADRESRT: restart failed
    -10: JobState.FAILED,  # JOB_EXEC_FAILUID: invalid uid/gid
    -11: JobState.REQUEUED,  # JOB_EXEC_RERUN: rerun (qrerun)
    -12: JobState.PREEMPTED,  # JOB_EXEC_CHKP: checkpointed and killed
    -13: JobState.FAILED,  # JOB_EXEC_FAIL_PASSWORD
    -14: JobState.REQUEUED,  # JOB_EXEC_RERUN_SIS_FAIL: sister MOM failed, rerun
    -15: JobState.REQUEUED,  # JOB_EXEC_QUERST: requeued to restart from checkpoint
    -16: JobState.REQUEUED,  # JOB_EXEC_FAILHOOK_RERUN: hook rejected, retried later
    -17: JobState.FAILED,  # JOB_EXEC_FAILHOOK_DELETE: hook rejected, deleted
    -18: JobState.REQUEUED,  # JOB_EXEC_HOOK_RERUN: a hook asked for a requeue
    -19: JobState.CANCELLED,  # JOB_EXEC_HOOK_DELETE: a hook asked for deletion
    -20: JobState.NODE_FAIL,  # JOB_EXEC_RERUN_MS_FAIL: mother superior connection failed
    -21: JobState.FAILED,  # JOB_EXEC_FAIL_SECURITY
    -22: JobState.FAILED,  # JOB_EXEC_HOOKERROR
    -23: JobState.FAILED,  # JOB_EXEC_FAIL_KRB5
    -24: JobState.FAILED,  # JOB_EXEC_KILL_NCPUS_BURST
    -25: JobState.FAILED,  # JOB_EXEC_KILL_NCPUS_SUM
    -26: JobState.OUT_OF_MEMORY,  # JOB_EXEC_KILL_VMEM
    -27: JobState.OUT_OF_MEMORY,  # JOB_EXEC_KILL_MEM
    -28: JobState.TIMEOUT,  # JOB_EXEC_KILL_CPUT
    -29: JobState.TIMEOUT,  # JOB_EXEC_KILL_WALLTIME
    -30: JobState.FAILED,  # JOB_EXEC_JOINJOB
}
# Exit_status above 256 means "killed by signal (status - 256)" (PBS Reference Guide).
_SIGNAL_OFFSET = 256
_HOLD_REASONS = {"u": "JobHeldUser", "o": "JobHeldAdmin", "p": "JobHeldAdmin", "s": "Dependency"}
# What OpenPBS records as ``project`` for a job submitted without -P: a placeholder, no account.
DEFAULT_PROJECT = "_pbs_project_default"
_SUBMITTED_ID = re.compile(r"\d+(\[\])?(\.\S+)?", re.ASCII)
_SUBJOB_ID = re.compile(r"(?P<base>\d+)\[(?P<index>\d+)\](?P<server>\..*)?", re.ASCII)
_CTIME_FORMAT = "%a %b %d %H:%M:%S %Y"
_SIZE = re.compile(r"(\d+)([kmgtp]?)([bw]?)", re.ASCII | re.IGNORECASE)
_SIZE_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def pbs_state(letter: str, exit_status: int | None, comment: str = "") -> JobState:
    """The neutral state of a job from its letter and, once finished, its Exit_status."""
    state = PBS_STATES.get(letter)
    if state is None:
        log.warning("unknown PBS job_state %r; reported as UNKNOWN", letter)
        return JobState.UNKNOWN
    if letter not in _FINISHED_LETTERS:
        return state
    return finished_state(exit_status, comment)


def finished_state(exit_status: int | None, comment: str = "") -> JobState:
    """How a finished job ended: no Exit_status means it was deleted before it ran."""
    if exit_status is None:
        return JobState.CANCELLED
    if exit_status == 0:
        return JobState.COMPLETED
    if exit_status < 0:
        return PBS_EXEC_STATUSES.get(exit_status, JobState.FAILED)
    if exit_status > _SIGNAL_OFFSET and "terminated" in comment:
        return JobState.CANCELLED  # qdel of a running job: SIGTERM, "... terminated by user"
    return JobState.FAILED


def parse_submit(stdout: str) -> str:
    """qsub prints the new id: "12.server", or "10[].server" for an array."""
    job_id = stdout.strip()
    if not _SUBMITTED_ID.fullmatch(job_id):
        raise SchedulerError(f"qsub printed {job_id!r} instead of a job id")
    return job_id


# PBS Professional Reference Guide, server attribute max_array_size: 10000 when unset.
DEFAULT_MAX_ARRAY_SIZE = 10000


def parse_max_array_size(stdout: str) -> int:
    """``qstat -B -f``'s "max_array_size = N", the most subjobs one array may have."""
    for line in stdout.splitlines():
        key, _, value = line.strip().partition(" = ")
        if key == "max_array_size" and is_decimal(value.strip()):
            return int(value)
    return DEFAULT_MAX_ARRAY_SIZE


def parse_qstat_json(stdout: str) -> dict[str, dict[str, Any]]:
    """``qstat -f -F json``: job id to its flattened attributes ("Resource_List.walltime")."""
    try:
        document = json.loads(stdout, strict=False) if stdout.strip() else {}
    except json.JSONDecodeError as exc:
        raise SchedulerError(f"qstat printed JSON that does not parse: {exc}") from exc
    jobs = document.get("Jobs", {})
    return {job_id: dict(_flatten(attributes)) for job_id, attributes in jobs.items()}


def parse_qstat_text(stdout: str) -> dict[str, dict[str, Any]]:
    """``qstat -f``: "Job Id:" blocks of "key = value", continued on tab-indented lines."""
    jobs: dict[str, dict[str, Any]] = {}
    attributes: dict[str, Any] = {}
    key = ""
    for line in stdout.split("\n"):
        if line.startswith("Job Id:"):
            attributes = jobs.setdefault(line.partition(":")[2].strip(), {})
        elif line.startswith("\t") and key:
            attributes[key] += line[1:]  # qstat wraps long values at 80 columns, mid-word
        elif " = " in line:
            # Only the indent goes: a value cut at 79 columns keeps its trailing space.
            key, _, value = line.lstrip().partition(" = ")
            attributes[key] = value
    return jobs


def job_info(job_id: str, attributes: Mapping[str, Any]) -> JobInfo:
    """One JobInfo from the attributes of either qstat format (PBS Pro or Torque names)."""
    letter = str(attributes.get("job_state", "?"))
    comment = str(attributes.get("comment", ""))
    exit_status = as_int(attributes.get("Exit_status", attributes.get("exit_status")))
    state = pbs_state(letter, exit_status, comment)
    exit_code, exit_signal = exit_fields(exit_status)
    array_job_id, array_task_id = split_subjob(job_id)
    finished = letter in _FINISHED_LETTERS
    return JobInfo(
        job_id=job_id,
        state=state,
        raw_state=letter if exit_status is None else f"{letter} (Exit_status {exit_status})",
        name=attributes.get("Job_Name"),
        reason=_reason(letter, attributes, comment),
        exit_code=exit_code,
        exit_signal=exit_signal,
        nodes=exec_hosts(attributes.get("exec_host")),
        partition=attributes.get("queue"),
        account=attributes.get("Account_Name"),
        submit_time=qstat_time(attributes.get("qtime") or attributes.get("ctime")),
        start_time=qstat_time(attributes.get("stime") or attributes.get("start_time")),
        end_time=qstat_time(attributes.get("obittime") or attributes.get("comp_time"))
        if finished
        else None,
        array_job_id=array_job_id if array_task_id is not None else None,
        array_task_id=array_task_id,
        restarts=max(0, (as_int(attributes.get("run_count")) or 0) - 1),
    )


def exit_fields(exit_status: int | None) -> tuple[int | None, int | None]:
    """(exit code, signal) in an Exit_status: 0-255 the script's code, above 256 a signal;
    negative (PBS's own JOB_EXEC_* failures) neither."""
    if exit_status is None:
        return None, None
    if 0 <= exit_status < 256:
        return exit_status, None
    if exit_status > _SIGNAL_OFFSET:
        return None, exit_status - _SIGNAL_OFFSET
    return None, None


def split_subjob(job_id: str) -> tuple[str, int | None]:
    """ "10[3].server" -> ("10[].server", 3): the array and the index; other ids unchanged."""
    subjob = _SUBJOB_ID.fullmatch(job_id)
    if subjob is None:
        return job_id, None
    return f"{subjob['base']}[]{subjob['server'] or ''}", int(subjob["index"])


def size_megabytes(value: Any) -> float | None:
    """A PBS size ("64mb", "7088kb", "2gb", "1024") in megabytes, None when it is not one.

    PBS Reference Guide, "Formats", size: an integer, in bytes unless suffixed k, m, g, t or p
    (binary multiples) followed by b (bytes) or w (words of 8 bytes): unlike Slurm's sizes, a
    bare number means bytes.
    """
    match = _SIZE.fullmatch(str(value).strip()) if value not in (None, "") else None
    if match is None:
        return None
    number, scale, unit = match.groups()
    word = 8 if unit.lower() == "w" else 1
    return int(number) * word * _SIZE_BYTES[scale.lower()] / _SIZE_BYTES["m"]


def duration_seconds(value: Any) -> int | None:
    """A PBS duration ("00:20:00", "5:00", "300") in seconds, None when it is not one.

    PBS Reference Guide, "Formats", duration: [[hours:]minutes:]seconds[.milliseconds]; unlike
    Slurm's --time, a bare number means seconds.
    """
    text = str(value).strip() if value not in (None, "") else ""
    clock = text.split(".", 1)[0]
    if is_decimal(clock):
        return int(clock)
    try:
        return parse_duration(clock) if clock.count(":") in (1, 2) else None
    except ValueError:
        return None


def is_array_parent(attributes: Mapping[str, Any]) -> bool:
    """The "10[].server" entry that stands for a whole array."""
    return str(attributes.get("array", "")).lower() == "true"


def submission_token(attributes: Mapping[str, Any]) -> str | None:
    """The HPCBRIDGE_SUBMISSION variable a job was submitted with, if any."""
    token = attributes.get("Variable_List.HPCBRIDGE_SUBMISSION")
    if token is not None:
        return str(token)
    variables = str(attributes.get("Variable_List", ""))  # text format: one long a=b,c=d line
    for pair in variables.split(","):
        name, _, value = pair.partition("=")
        if name == "HPCBRIDGE_SUBMISSION":
            return value
    return None


def _reason(letter: str, attributes: Mapping[str, Any], comment: str) -> str | None:
    if letter == "H":
        # Letters come in PBS's order s, o, u, p ("su": a dependency, then qhold): a hold
        # someone must release wins over the dependency, whatever its place.
        holds = str(attributes.get("Hold_Types", ""))
        return next((_HOLD_REASONS[h] for h in "opus" if h in holds), "JobHeld")
    if letter == "W":
        return "BeginTime"
    return comment or None


def _flatten(attributes: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in attributes.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def as_int(value: Any) -> int | None:
    """An integer attribute (JSON numbers, or text), None when absent or not a number."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def exec_hosts(exec_host: Any) -> str | None:
    """ "vm/0*2+vm2/1" -> "vm,vm2": the distinct hosts, without their CPU slots."""
    if not exec_host:
        return None
    hosts = [part.split("/", 1)[0] for part in str(exec_host).split("+")]
    return ",".join(dict.fromkeys(hosts))


def qstat_time(value: Any) -> datetime | None:
    """A time attribute: ctime-style strings (qstat runs with TZ=UTC) or epoch seconds (Torque)."""
    if value in (None, ""):
        return None
    if isinstance(value, int) or is_decimal(str(value)):
        return datetime.fromtimestamp(int(value), UTC)
    return datetime.strptime(str(value), _CTIME_FORMAT).replace(tzinfo=UTC)


def account_of(attributes: Mapping[str, Any]) -> str | None:
    """The account a job is charged to: Account_Name (accounting: ``account``), else its
    project unless that is PBS's placeholder for none."""
    account = attributes.get("Account_Name") or attributes.get("account")
    project = attributes.get("project")
    if account:
        return str(account)
    return None if project in (None, "", DEFAULT_PROJECT) else str(project)
