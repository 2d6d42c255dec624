"""The supervisor of one local job: what slurmd and slurmstepd are to a Slurm job.

``python -m hpcbridge.backends.local.runner JOBDIR`` detaches from its caller at once, so the
submitting process (and the transport's ``run``) does not wait, and it outlives that process.
It then starts each task of the job as it becomes eligible (dependencies met, begin time
reached, not held, within the array's %limit, singleton free), enforces the walltime, sends
spec.signal before it, notices cancel and requeue written by the backend, records how each run
ended, and exits once every task has ended. A job that is requeued after its runner exited gets
a new runner; ``runner.lock`` keeps it to one runner per job at a time.

The backend changes records only under the job's lock, and so does this runner; each side
re-reads a record under the lock before deciding, so a cancel and a natural end cannot both win.
"""

# The imports below this guard are delayed on purpose: the submitter's run() returns only once
# this process lets go of its output pipes, so it detaches before paying for them (~30 ms).
# ruff: noqa: E402
from __future__ import annotations

import os
import sys


def _detach(log_path: str) -> None:
    """Fork into a new session with stdio on runner.log; the caller's process exits at once."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)


if __name__ == "__main__" and len(sys.argv) == 2 and sys.argv[1] != "--foreground":
    _detach(os.path.join(sys.argv[1], "runner.log"))

import contextlib
import select
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from hpcbridge.backends.local import store as st
from hpcbridge.backends.local.rules import dependency_verdict, output_paths, singleton_blocked

# SIGTERM first, SIGKILL this long after (Slurm's KillWait, 30 s by default, shortened).
KILL_GRACE_S = 2.0
# Pending tasks are re-checked quickly at first, then less often while nothing changes.
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0


def log(message: str) -> None:
    """One timestamped line in runner.log."""
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}", file=sys.stderr)
    sys.stderr.flush()


@dataclass
class Child:
    """One running task: its process and the moments at which to act on it."""

    task: str
    process: subprocess.Popen[bytes]
    restarts: int
    deadline: float | None
    signal_at: float | None
    pidfd: int | None
    timed_out: bool = False
    term_sent_at: float | None = None
    killed: bool = False
    slot: int | None = None  # the run slot's locked file, held while the task runs

    @property
    def pgid(self) -> int:
        """The task's process group: the shell started a new session, so its own pid."""
        return self.process.pid


@dataclass
class Runner:
    """Runs the tasks of one job folder until every one of them has ended."""

    jobdir: Path
    store: st.Store = field(init=False)
    meta: st.JobMeta = field(init=False)
    env: dict[str, str] = field(init=False)
    children: dict[str, Child] = field(default_factory=dict)
    interval: float = POLL_MIN_S
    last_seen: tuple[tuple[str, bool, int], ...] = ()

    def __post_init__(self) -> None:
        self.store = st.Store(self.jobdir.parent.parent)
        meta = self.store.read_meta(int(self.jobdir.name))
        if meta is None:
            raise SystemExit(f"{self.jobdir} holds no job.json")
        self.meta = meta
        self.env = st.read_json(self.jobdir / "env.json") or {}
        self.node = os.uname().nodename
        self.me = os.getpid()

    @property
    def job(self) -> int:
        """This job's id."""
        return self.meta["id"]

    def run(self) -> None:
        """Own the job (waiting for a previous runner to finish) and supervise it."""
        with st.locked(self.jobdir / "runner.lock"):
            log(f"runner for job {self.job} started")
            try:
                while self.step():
                    self.wait()
            finally:
                self.abandon()
            log(f"runner for job {self.job} done")

    def step(self) -> bool:
        """One pass over the job; False once every task has ended and nothing runs."""
        self.reap()
        records = self.read_records()
        self.claim(records)
        self.watch(records)
        self.schedule(records)
        seen = tuple((r["state"], r["held"], r["restarts"]) for r in records.values())
        self.interval = (
            POLL_MIN_S if seen != self.last_seen else min(self.interval * 1.5, POLL_MAX_S)
        )
        self.last_seen = seen
        return bool(self.children) or not all(st.is_terminal(r) for r in records.values())

    def wait(self) -> None:
        """Sleep until a child exits, a time limit falls due, or the next poll."""
        timeout = min(self.interval, POLL_MAX_S)
        moments = [m for child in self.children.values() for m in _due_moments(child)]
        if moments:
            timeout = max(0.0, min(timeout, min(moments) - time.monotonic()))
        pidfds = [c.pidfd for c in self.children.values() if c.pidfd is not None]
        if pidfds and len(pidfds) == len(self.children):
            select.select(pidfds, [], [], timeout)
        else:
            time.sleep(timeout if not self.children else min(timeout, POLL_MIN_S))

    def read_records(self) -> dict[str, st.Record]:
        """Every task's record, in index order."""
        records: dict[str, st.Record] = {}
        for task in self.meta["tasks"]:
            record = st.read_json(self.jobdir / f"{task}.json")
            if record is not None:
                records[task] = record
        return records

    def claim(self, records: dict[str, st.Record]) -> None:
        """Put this runner's pid on unfinished records, so status can tell if it dies."""
        for task, record in records.items():
            if not st.is_terminal(record) and record["runner"] != self.me:
                updated = self.update(task, lambda r: not st.is_terminal(r), runner=self.me)
                if updated is not None:
                    records[task] = updated

    def update(
        self, task: str, when: Callable[[st.Record], bool], **changes: object
    ) -> st.Record | None:
        """Under the job's lock: re-read a record and apply ``changes`` if ``when`` holds."""
        with self.store.job_lock(self.job):
            record = st.read_json(self.jobdir / f"{task}.json")
            if record is None or not when(record):
                return None
            record.update(changes)
            self.store.write_record(record)
            return record  # type: ignore[no-any-return]

    # -- running tasks -----------------------------------------------------------------------

    def watch(self, records: dict[str, st.Record]) -> None:
        """Act on running tasks: stops ordered by the backend, signals and time limits."""
        now = time.monotonic()
        for child in self.children.values():
            record = records.get(child.task)
            ours = (
                record is not None
                and record["state"] == st.RUNNING
                and record["restarts"] == child.restarts
            )
            if not ours:
                self.stop(child, now)
            if child.signal_at is not None and now >= child.signal_at:
                self.send_job_signal(child)
                child.signal_at = None
            if child.deadline is not None and now >= child.deadline and not child.timed_out:
                child.timed_out = True
                log(f"{child.task} reached its walltime")
                self.stop(child, now)
            overdue = child.term_sent_at is not None and now - child.term_sent_at >= KILL_GRACE_S
            if overdue and not child.killed:
                _signal_group(child.pgid, signal.SIGKILL)
                child.killed = True

    def stop(self, child: Child, now: float) -> None:
        """SIGTERM the task's process group once; watch() follows with SIGKILL."""
        if child.term_sent_at is None:
            _signal_group(child.pgid, signal.SIGTERM)
            child.term_sent_at = now

    def send_job_signal(self, child: Child) -> None:
        """spec.signal: to the batch shell only (B:), or to the whole job."""
        spec = self.meta["signal"]
        if spec is None:
            return
        number = getattr(signal, f"SIG{spec['name']}")
        log(f"sending SIG{spec['name']} to {child.task}")
        with contextlib.suppress(ProcessLookupError):
            if spec["batch_shell"]:
                os.kill(child.process.pid, number)
            else:
                os.killpg(child.pgid, number)

    def reap(self) -> None:
        """Record how finished tasks ended, unless a cancel or requeue got there first."""
        for child in [c for c in self.children.values() if _exited(c)]:
            # The shell is a zombie until wait(), so its group id cannot be reused yet: end
            # whatever it left running in the background, as Slurm ends a job's processes.
            _signal_group(child.pgid, signal.SIGKILL)
            returncode = child.process.wait()
            for fd in (child.pidfd, child.slot):
                if fd is not None:
                    os.close(fd)
            del self.children[child.task]
            self.finish(child, returncode)

    def finish(self, child: Child, returncode: int) -> None:
        """Write the end of this run, if the record still belongs to it."""
        code, signum = (0, -returncode) if returncode < 0 else (returncode, 0)
        with self.store.job_lock(self.job):
            record: st.Record | None = st.read_json(self.jobdir / f"{child.task}.json")
            if record is None or record["restarts"] != child.restarts:
                return  # requeued meanwhile: the next run owns the record now
            if record["state"] == st.RUNNING:
                record["state"] = _ending(returncode, child.timed_out)
                record["end"] = st.now()
            if record["exit_code"] is None and st.is_terminal(record):
                record["exit_code"], record["exit_signal"] = code, signum
            record["pid"] = None
            self.store.write_record(record)
        log(f"{child.task} ended: {record['state']} (exit {code}:{signum})")

    def abandon(self) -> None:
        """On the way out (normally nothing is left): kill what still runs."""
        for child in self.children.values():
            _signal_group(child.pgid, signal.SIGKILL)

    # -- pending tasks -----------------------------------------------------------------------

    def schedule(self, records: dict[str, st.Record]) -> None:
        """Start eligible pending tasks in index order; record why the others wait."""
        pending = [
            r for t, r in records.items() if r["state"] == st.PENDING and t not in self.children
        ]
        if not pending:
            return
        now = st.now()
        deadline, walltime = self.meta["deadline"], self.meta["walltime"] or 0
        if deadline is not None and now + walltime > deadline:
            self.end_pending(pending, st.DEADLINE, st.DEADLINE_REASON)
            return
        verdict = dependency_verdict(self.store, self.meta["depends"])
        if verdict == "never":
            self.end_pending(pending, st.CANCELLED, st.NEVER_SATISFIED_REASON)
            return
        begin, limit = self.meta["begin"], self.meta["limit"]
        for record in pending:
            reason: str | None = None
            if verdict == "wait":
                reason = st.DEPENDENCY_REASON
            elif begin is not None and now < begin:
                reason = st.BEGIN_REASON
            elif limit is not None and len(self.children) >= limit:
                reason = st.ARRAY_LIMIT_REASON
            elif record["held"]:
                pass
            elif (slot := self.store.take_slot(self._slots())) is None:
                reason = st.RESOURCES_REASON
            elif not self.start(record, slot):
                reason = st.DEPENDENCY_REASON  # a singleton peer runs or was queued first
            if record["id"] not in self.children and reason != record["reason"]:
                self.update(record["id"], _is_pending, reason=reason)

    def _slots(self) -> int:
        """Run slots on this machine; a job submitted before the limit existed gets the default."""
        return self.meta.get("max_running") or os.cpu_count() or 1

    def end_pending(self, pending: list[st.Record], state: str, reason: str) -> None:
        """End tasks that can never start (deadline passed, dependency failed)."""
        for record in pending:
            log(f"{record['id']} will never start: {reason}")
            self.update(record["id"], _is_pending, state=state, reason=reason, end=st.now())

    def start(self, record: st.Record, slot: int) -> bool:
        """Start a task in run slot ``slot`` unless a singleton peer forbids it; True if it
        started (or ended). A task that did not start gives its slot back."""
        singleton = any(condition == "singleton" for condition, _ in self.meta["depends"])
        try:
            with self.store.name_lock(self.meta["name"]):
                if singleton and singleton_blocked(self.store, record):
                    return False
                with self.store.job_lock(self.job):
                    current: st.Record | None = st.read_json(self.jobdir / f"{record['id']}.json")
                    if current is None or current["state"] != st.PENDING or current["held"]:
                        return True  # changed under us; the next pass sees the new state
                    self.launch(current)
            return True
        finally:
            child = self.children.get(record["id"])
            if child is None:
                os.close(slot)
            else:
                child.slot = slot

    def launch(self, record: st.Record) -> None:
        """Spawn the job script for a task and mark it RUNNING; call with the job's lock."""
        started = st.now()
        record.update({"start": started, "end": None, "node": self.node, "reason": None})
        record.update({"runner": self.me, "exit_code": None, "exit_signal": None})
        try:
            process = self.spawn(record)
        except OSError as exc:
            log(f"{record['id']} could not start: {exc}")
            record.update({"state": st.FAILED, "end": started, "exit_code": 1, "exit_signal": 0})
            self.store.write_record(record)
            return
        record.update({"state": st.RUNNING, "pid": process.pid})
        self.store.write_record(record)
        self.children[record["id"]] = self.track(record, process)
        log(f"{record['id']} started as process group {process.pid}")

    def spawn(self, record: st.Record) -> subprocess.Popen[bytes]:
        """``bash script`` in the work directory, in its own session, output to its files."""
        index = record["index"]
        env = {
            **self.env,
            "HPCBRIDGE_JOB_ID": record["id"],
            "HPCBRIDGE_ARRAY_INDEX": "" if index is None else str(index),
        }
        stdout_path, stderr_path = output_paths(self.meta, record)
        mode = "ab" if record["restarts"] else "wb"  # a requeued run adds to the first's output
        with open(stdout_path, mode) as stdout:
            if stderr_path is None or stderr_path == stdout_path:
                return _popen(self.jobdir, self.meta, env, stdout, subprocess.STDOUT)
            with open(stderr_path, mode) as stderr:
                return _popen(self.jobdir, self.meta, env, stdout, stderr)

    def track(self, record: st.Record, process: subprocess.Popen[bytes]) -> Child:
        """The deadlines of a run that has just started."""
        started = time.monotonic()
        walltime, spec = self.meta["walltime"], self.meta["signal"]
        deadline = started + walltime if walltime else None
        signal_at = None
        if deadline is not None and spec is not None:
            signal_at = max(started, deadline - spec["seconds"])
        pidfd = os.pidfd_open(process.pid) if hasattr(os, "pidfd_open") else None
        return Child(record["id"], process, record["restarts"], deadline, signal_at, pidfd)


def _is_pending(record: st.Record) -> bool:
    return record["state"] == st.PENDING


def _ending(returncode: int, timed_out: bool) -> str:
    if timed_out:
        return st.TIMEOUT
    return st.COMPLETED if returncode == 0 else st.FAILED


def _exited(child: Child) -> bool:
    if child.pidfd is not None:
        return bool(select.select([child.pidfd], [], [], 0)[0])
    return child.process.poll() is not None


def _due_moments(child: Child) -> list[float]:
    moments = [m for m in (child.signal_at, child.deadline) if m is not None]
    if child.term_sent_at is not None and not child.killed:
        moments.append(child.term_sent_at + KILL_GRACE_S)
    return moments


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _popen(
    jobdir: Path, meta: st.JobMeta, env: dict[str, str], stdout: IO[bytes], stderr: IO[bytes] | int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["bash", str(jobdir / "script.sh")],
        cwd=meta["workdir"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``local_runner [--foreground] JOBDIR``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--foreground"]:
        args = args[1:]
    if len(args) != 1:
        print("usage: python -m hpcbridge.backends.local.runner [--foreground] JOBDIR")
        return 2
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    try:
        Runner(Path(args[0]).resolve()).run()
    except Exception:
        log(traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
