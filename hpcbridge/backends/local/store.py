"""The local backend's state store: one folder per job, one JSON record per job or array task.

Layout under the state directory::

    lock                   taken while allocating an id and creating the job's folder
    next_id                the id the next submission gets
    names/<name>           ids of the jobs with that name, one a line (for singleton)
    names/<name>.lock      taken around every start of a job with that name
    jobs/<N>/job.json      what was submitted; never changes afterwards
    jobs/<N>/env.json      the submitter's environment, which the job inherits
    jobs/<N>/script.sh     the rendered job script
    jobs/<N>/lock          taken around every change of job N's records
    jobs/<N>/runner.lock   held by job N's runner for as long as it lives
    jobs/<N>/runner.log    the runner's own messages, for post-mortems
    jobs/<N>/<N>.json      the record of a plain job; an array has <N>_<i>.json per task

Records are replaced whole (write a temporary file, then ``os.replace``), so a reader never
needs a lock and never sees half a record: ``status`` is one read per id. Writers that could
collide (the runner finishing a job while a user cancels it) take the job's lock and re-read
before they decide.

This module imports nothing beyond the standard library because every runner process loads it:
locks are plain ``fcntl.flock`` (which the kernel releases when a process dies) rather than the
filelock package, whose import alone costs about 80 ms per runner.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

from hpcbridge.jobs.units import is_decimal

# The JobState values this store writes (hpcbridge.jobs.state.JobState, without importing pydantic).
PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMEOUT = "TIMEOUT"
DEADLINE = "DEADLINE"
NODE_FAIL = "NODE_FAIL"
BOOT_FAIL = "BOOT_FAIL"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, DEADLINE, NODE_FAIL, BOOT_FAIL})

# Pending reasons, spelled as squeue(1) "JOB REASON CODES" spells them.
HELD_REASON = "JobHeldUser"
DEPENDENCY_REASON = "Dependency"
BEGIN_REASON = "BeginTime"
ARRAY_LIMIT_REASON = "JobArrayTaskLimit"
NEVER_SATISFIED_REASON = "DependencyNeverSatisfied"
DEADLINE_REASON = "DeadLine"
RESOURCES_REASON = "Resources"  # no run slot free (Slurm: waiting for resources)
RUNNER_GONE_REASON = "RunnerGone"

_CHUNK = 1 << 16


class Record(TypedDict):
    """What is known about one job or array task; the fields JobInfo reports, plus bookkeeping."""

    id: str
    job: int
    index: int | None
    name: str
    state: str
    reason: str | None
    held: bool
    exit_code: int | None
    exit_signal: int | None
    node: str | None
    partition: str | None
    account: str | None
    submit: float
    start: float | None
    end: float | None
    restarts: int
    pid: int | None
    runner: int | None


class SignalMeta(TypedDict):
    """spec.signal, as the runner needs it."""

    name: str
    seconds: int
    batch_shell: bool


class JobMeta(TypedDict):
    """The submission, fixed once written; the runner reads it to know what to do."""

    id: int
    name: str
    tasks: list[str]
    array: bool
    limit: int | None
    max_running: int  # tasks of every job at once on this machine (site local.max_running)
    depends: list[list[str]]
    walltime: int | None
    signal: SignalMeta | None
    begin: float | None
    deadline: float | None
    workdir: str
    stdout: str | None
    stderr: str | None
    requeue: bool | None
    token: str | None
    submit: float
    user: str
    cpus: int
    gpus: int
    memory_mb: int | None


def task_id(job: int, index: int | None) -> str:
    """``N`` for a plain job, ``N_i`` for task i of array N, as squeue prints them."""
    return str(job) if index is None else f"{job}_{index}"


def parse_id(text: str) -> tuple[int, int | None] | None:
    """``"12"`` -> (12, None), ``"12_3"`` -> (12, 3); anything else is no id of ours."""
    base, sep, index = text.partition("_")
    if not is_decimal(base) or (sep and not is_decimal(index)):
        return None
    return int(base), int(index) if sep else None


def is_terminal(record: Record) -> bool:
    """True once the record will not change again without a requeue."""
    return record["state"] in TERMINAL


def runner_alive(pid: int | None) -> bool:
    """Whether a runner process still exists; an unknown runner (one starting) counts as alive."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A dead runner not yet reaped (a container whose init does not reap) still has a pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def effective(record: Record) -> Record:
    """The record as users should see it: unfinished work whose runner died has failed.

    The runner is the only process that can finish a job, so once it is gone (killed, or the
    machine rebooted) the job will never end on its own; NODE_FAIL is what Slurm reports when
    the node under a job disappears. But while the job's own processes run on without their
    runner, it is still RUNNING (reason RunnerGone): a dependant must not start, nor an
    ``afterany`` take it for ended, while its work may still write its output. ``cancel``
    ends such a job's process group as it ends any running job's.
    """
    if is_terminal(record) or runner_alive(record["runner"]):
        return record
    if record["state"] == RUNNING and group_alive(record["pid"]):
        return {**record, "reason": RUNNER_GONE_REASON}
    return {**record, "state": NODE_FAIL, "reason": RUNNER_GONE_REASON}


def group_alive(pgid: int | None) -> bool:
    """Whether a live process of the process group ``pgid`` (a task's) is left. Zombies do
    not count: an init that does not reap (some containers') would keep them for ever."""
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.scandir("/proc"):
        if not is_decimal(entry.name):
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stream:
                fields = stream.read().rpartition(b")")[2].split()
        except OSError:
            continue  # it ended while we looked
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; the file is never deleted, so flock stays exact."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically so concurrent readers see the old or the new file, whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(data, stream, separators=(",", ":"))
    os.replace(temporary, path)


def read_json(path: Path | str) -> Any:
    """The parsed file, or None when it does not exist (raw os calls: status reads thousands)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, _CHUNK)
        if len(data) == _CHUNK:  # a big array's job.json
            data += b"".join(iter(lambda: os.read(fd, _CHUNK), b""))
    finally:
        os.close(fd)
    return json.loads(data)


class Store:
    """Paths and atomic reads and writes of one state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs = root / "jobs"
        self.names = root / "names"
        self.slots = root / "slots"
        self._jobs_prefix = f"{self.jobs}{os.sep}"  # status builds thousands of paths: no Path

    def ensure(self) -> None:
        """Create the folders; private to the user, since env.json holds their environment."""
        for folder in (self.root, self.jobs, self.names, self.slots):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def job_dir(self, job: int) -> Path:
        """The folder of job ``job``."""
        return self.jobs / str(job)

    def global_lock(self) -> contextlib.AbstractContextManager[None]:
        """Serialises id allocation and job folder creation between submitters."""
        return locked(self.root / "lock")

    def job_lock(self, job: int) -> contextlib.AbstractContextManager[None]:
        """Serialises changes to one job's records (runner against cancel, hold, requeue)."""
        return locked(self.job_dir(job) / "lock")

    def take_slot(self, slots: int) -> int | None:
        """One of ``slots`` run slots, as an open file holding its flock (close it to give the
        slot back; the kernel gives it back when the runner dies), or None when all are taken."""
        for number in range(slots):
            fd = os.open(self.slots / str(number), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def name_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Serialises starts of same-named jobs, so a singleton's check cannot go stale."""
        return locked(self.names / f"{_file_name(name)}.lock")

    def read_meta(self, job: int) -> JobMeta | None:
        """The submission of job ``job``, or None for an unknown job."""
        meta: JobMeta | None = read_json(self.job_dir(job) / "job.json")
        return meta

    def read_record(self, job: int, index: int | None) -> Record | None:
        """One job's or task's record, or None when there is none."""
        record: Record | None = read_json(f"{self._jobs_prefix}{job}/{task_id(job, index)}.json")
        return record

    def write_record(self, record: Record) -> None:
        """Replace a record; callers that race with others hold the job's lock."""
        write_json(self.job_dir(record["job"]) / f"{record['id']}.json", record)

    def members(self, job_id: str) -> list[Record]:
        """The records an id stands for: a task, a plain job, or every task of an array."""
        parsed = parse_id(job_id)
        if parsed is None:
            return []
        job, index = parsed
        record = self.read_record(job, index)
        if record is not None:
            return [record]
        if index is not None:
            return []
        meta = self.read_meta(job)
        if meta is None or not meta["array"]:
            return []
        folder = f"{self._jobs_prefix}{job}/"
        found = (read_json(f"{folder}{task}.json") for task in meta["tasks"])
        return [task for task in found if task is not None]

    def job_numbers(self) -> list[int]:
        """Every job the store holds, in submission order."""
        try:
            return sorted(
                int(entry.name) for entry in os.scandir(self.jobs) if is_decimal(entry.name)
            )
        except FileNotFoundError:
            return []

    def allocate_id(self) -> int:
        """The next free id; call with the global lock held."""
        stored = read_json(self.root / "next_id")
        job = stored if isinstance(stored, int) else self._highest_id() + 1
        while self.job_dir(job).exists():  # next_id lost or stale: never reuse an id
            job += 1
        write_json(self.root / "next_id", job + 1)
        return job

    def add_name(self, name: str, job: int) -> None:
        """Index a job under its name; call with the global lock held."""
        with open(self.names / _file_name(name), "a", encoding="utf-8") as stream:
            stream.write(f"{job}\n")

    def jobs_named(self, name: str) -> list[int]:
        """Ids of every job submitted with this name."""
        try:
            text = (self.names / _file_name(name)).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [int(line) for line in text.split()]

    def _highest_id(self) -> int:
        try:
            return max(
                (int(e.name) for e in os.scandir(self.jobs) if is_decimal(e.name)), default=0
            )
        except FileNotFoundError:
            return 0


def _file_name(name: str) -> str:
    """A job name made safe as one file name (names may hold '/')."""
    return urllib.parse.quote(name, safe="")[:200]


def now() -> float:
    """Seconds since the epoch; records keep UTC instants as floats."""
    return time.time()
