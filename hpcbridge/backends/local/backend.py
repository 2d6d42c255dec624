"""The embedded default scheduler: jobs run as processes on this machine, no cluster needed.

It behaves like Slurm wherever a user could tell the difference (states, pending reasons,
array ids ``N_i``, dependency rules, output file patterns), so what works here works on a
cluster. The backend itself only reads and writes the state store (hpcbridge.backends.
local_store); each job is run by its own runner process (hpcbridge.backends.local.runner),
started and signalled through the transport like every other command hpcbridge runs.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpcbridge.backends.base import aggregate_array
from hpcbridge.backends.local import store as st
from hpcbridge.errors import JobNotFound, SchedulerError, SpecError, SubmitError, TransportError
from hpcbridge.jobs.checkpoint import checkpoint_context
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo, JobState
from hpcbridge.transports.base import Transport

log = logging.getLogger(__name__)

# The messages scontrol prints for the same refusals (slurm_errno.c).
_NOT_PENDING = "Job is no longer pending execution"
_IS_PENDING = "Job is pending execution"
_REQUEUE_DISABLED = "Requested operation is presently disabled"


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/hpcbridge/local``: job records outlive the process that submitted."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "hpcbridge" / "local"


class LocalBackend:
    """Submit, watch and steer jobs that run on this machine."""

    name = "local"
    template = "local/job.sh.j2"
    missing_job_hint = ""

    def __init__(
        self,
        transport: Transport,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        max_running: int | None = None,
    ) -> None:
        self.transport = transport
        self.store = st.Store(Path(state_dir) if state_dir else default_state_dir())
        self.max_running = max_running or os.cpu_count() or 1

    def template_context(self, spec: JobSpec) -> dict[str, Any]:
        """Only the checkpoint wrapper's commands: the runner reads every setting from the
        state store, not from the script."""
        if spec.exclude_nodes is not None:
            raise SpecError(
                f"exclude_nodes: {spec.exclude_nodes!r} cannot be honoured by the local "
                "backend, which runs every job on this machine"
            )
        if spec.constraint is not None:
            raise SpecError(
                f"constraint: {spec.constraint!r} cannot be honoured by the local backend, "
                "which runs every job on this machine"
            )
        return checkpoint_context(spec)

    def submit(self, script: str, spec: JobSpec, token: str | None = None) -> str:
        """Record the job and start its runner; dependencies must name known jobs, as in Slurm."""
        self.store.ensure()
        depends = self._checked_dependencies(spec)
        indices = spec.array_indices()
        if spec.array is not None and not indices:
            raise SubmitError(
                "local backend refused the job (array)",
                stderr=f"Invalid job array specification: {spec.array!r}",
            )
        with self.store.global_lock():
            job = self.store.allocate_id()
            meta = _meta(job, spec, depends, indices, token, max_running=self.max_running)
            tasks: list[int | None] = [*indices] or [None]
            self._create(meta, script, [_record(meta, spec, i) for i in tasks])
            self.store.add_name(spec.name, job)
        try:
            self._launch_or_fail(job)
        except SchedulerError as exc:
            raise SubmitError(f"local backend could not start job {job}: {exc}") from exc
        return str(job)

    def max_array_size(self) -> int | None:
        """None: arrays here have no size limit."""
        return None

    def array_task_id(self, array_id: str, index: int) -> str:
        """Task ``index`` of array ``array_id``: "12_17", as on Slurm."""
        return st.task_id(int(array_id), index)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """One read per record; an array id brings its aggregate and every task."""
        found: dict[str, JobInfo] = {}
        for job_id in job_ids:
            members = self.store.members(job_id)
            if not members:
                continue
            infos = [_info(record) for record in members]
            for info in infos:
                found[info.job_id] = info
            if job_id not in found:
                found[job_id] = aggregate_array(job_id, infos)
        return found

    def cancel(self, job_ids: Sequence[str]) -> None:
        """End pending and running jobs; finished ones stay as they ended."""
        doomed: list[int] = []

        def cancel_one(record: st.Record) -> bool:
            if st.is_terminal(record):
                return False
            if record["state"] == st.RUNNING and record["pid"]:
                doomed.append(record["pid"])
            record.update({"state": st.CANCELLED, "reason": None, "end": st.now()})
            return True

        unknown = self._apply(job_ids, cancel_one)
        self._signal(doomed)
        _refuse_unknown(unknown)

    def hold(self, job_ids: Sequence[str]) -> None:
        """Keep pending jobs from starting; a plain job that already started is refused."""
        self._set_held(job_ids, held=True)

    def release(self, job_ids: Sequence[str]) -> None:
        """Undo hold."""
        self._set_held(job_ids, held=False)

    def requeue(self, job_ids: Sequence[str]) -> None:
        """Stop running jobs, put them and finished ones back in the queue; each run counts."""
        doomed: list[int] = []
        refused: list[str] = []
        restart: set[int] = set()

        def requeue_one(record: st.Record) -> bool:
            problem = _requeue_problem(self.store, record)
            if problem:
                if problem != _IS_PENDING or record["index"] is None:
                    refused.append(f"{record['id']} ({problem})")
                return False
            if record["state"] == st.RUNNING and record["pid"]:
                doomed.append(record["pid"])
            record.update({"state": st.PENDING, "reason": None, "held": False, "pid": None})
            record.update({"start": None, "end": None, "exit_code": None, "exit_signal": None})
            record["runner"] = None
            record["restarts"] += 1
            restart.add(record["job"])
            return True

        unknown = self._apply(job_ids, requeue_one)
        self._signal(doomed)
        for job in sorted(restart):
            self._launch_or_fail(job)
        _refuse_unknown(unknown)
        if refused:
            raise SchedulerError(f"cannot requeue {', '.join(refused)}")

    def set_priority(self, job_ids: Sequence[str], *, qos: str | None, nice: int | None) -> None:
        """Refused: tasks here take run slots as they free up, in the order they wait."""
        del qos, nice
        raise SchedulerError(
            f"cannot set the priority of {', '.join(job_ids)}: the local backend has no "
            "priorities (its tasks start as run slots free up)"
        )

    def describe(self) -> str:
        """Where the records are and how many jobs they hold."""
        return f"local backend: state in {self.store.root}, {len(self.store.job_numbers())} jobs"

    def close(self) -> None:
        """Nothing to release: its state is files, each closed when its command ends."""

    # -- helpers -------------------------------------------------------------------------------

    def _checked_dependencies(self, spec: JobSpec) -> list[list[str]]:
        """Dependencies as [condition, job id]; sbatch refuses unknown ids, and so do we."""
        unknown = [
            d.job for d in spec.depends_on if d.job is not None and not self.store.members(d.job)
        ]
        if unknown:
            raise SubmitError(
                "local backend refused the job (depends_on)",
                stderr=f"Job dependency problem: no job {', '.join(unknown)}",
            )
        return [[d.condition, d.job or ""] for d in spec.depends_on]

    def _create(self, meta: st.JobMeta, script: str, records: list[st.Record]) -> None:
        """Write the job folder aside and rename it into place, so it appears complete."""
        final = self.store.job_dir(meta["id"])
        draft = final.with_name(f".new-{meta['id']}")
        shutil.rmtree(draft, ignore_errors=True)  # left by a submitter that died here
        draft.mkdir(mode=0o700)
        st.write_json(draft / "job.json", meta)
        st.write_json(draft / "env.json", dict(os.environ))
        (draft / "script.sh").write_text(script, encoding="utf-8")
        for record in records:
            st.write_json(draft / f"{record['id']}.json", record)
        draft.rename(final)

    def _launch(self, job: int) -> None:
        """Start the job's runner, which detaches, so this returns at once."""
        argv = [
            sys.executable,
            "-m",
            "hpcbridge.backends.local.runner",
            str(self.store.job_dir(job)),
        ]
        try:
            result = self.transport.run(argv, env={"PYTHONPATH": _python_path()})
        except TransportError as exc:
            raise SchedulerError(f"cannot start the runner of local job {job}: {exc}") from exc
        if not result.ok:
            raise SchedulerError(
                f"the runner of local job {job} failed to start",
                argv=result.argv,
                returncode=result.returncode,
                stderr=result.stderr,
            )

    def _launch_or_fail(self, job: int) -> None:
        """Start the runner; if it cannot start, its unclaimed tasks would wait forever, so
        they end as BOOT_FAIL (Slurm's word for a job its node could not start)."""
        try:
            self._launch(job)
        except SchedulerError:

            def fail(record: st.Record) -> bool:
                if record["state"] != st.PENDING or record["runner"] is not None:
                    return False
                record.update({"state": st.BOOT_FAIL, "reason": "RunnerLaunchFailed"})
                record["end"] = st.now()
                return True

            self._apply([str(job)], fail)
            raise

    def _apply(self, job_ids: Iterable[str], change: Callable[[st.Record], bool]) -> list[str]:
        """Apply ``change`` to every task the ids stand for, under each job's lock, writing the
        records it changed; return the ids that name no job.

        Like scancel and scontrol, known jobs are acted on even when others are unknown.
        """
        groups: dict[int, list[int | None]] = {}
        unknown: list[str] = []
        for job_id in job_ids:
            members = self.store.members(job_id)
            if not members:
                unknown.append(job_id)
            for member in members:
                groups.setdefault(member["job"], []).append(member["index"])
        for job, indices in groups.items():
            with self.store.job_lock(job):
                for index in indices:
                    record = self.store.read_record(job, index)
                    if record is not None and change(record):
                        self.store.write_record(record)
        return unknown

    def _set_held(self, job_ids: Sequence[str], *, held: bool) -> None:
        """As scontrol does: skip array tasks that are not pending, refuse such plain jobs."""
        refused: list[str] = []

        def set_one(record: st.Record) -> bool:
            if record["state"] != st.PENDING:
                if record["index"] is None:
                    refused.append(record["id"])
                return False
            changed = record["held"] != held
            record["held"] = held
            return changed

        _refuse_unknown(self._apply(job_ids, set_one))
        if refused:
            verb = "hold" if held else "release"
            raise SchedulerError(f"cannot {verb} job {', '.join(refused)}", stderr=_NOT_PENDING)

    def _signal(self, pgids: list[int]) -> None:
        """SIGTERM the process groups of stopped jobs; their runners follow up with SIGKILL."""
        if not pgids:
            return
        argv = ["kill", "-s", "TERM", "--", *(f"-{pgid}" for pgid in pgids)]
        try:
            self.transport.run(argv)  # a group that has just ended is no error here
        except TransportError as exc:
            log.warning("could not signal %s (%s); the runners will", pgids, exc)


def _refuse_unknown(unknown: list[str]) -> None:
    if unknown:
        raise JobNotFound(f"no local job with id {', '.join(unknown)}")


def _requeue_problem(store: st.Store, record: st.Record) -> str | None:
    """Why scontrol would refuse to requeue this record, if it would."""
    meta = store.read_meta(record["job"])
    if meta is not None and meta["requeue"] is False:
        return _REQUEUE_DISABLED
    if st.effective(record)["state"] == st.PENDING:
        return _IS_PENDING
    return None


def _meta(
    job: int,
    spec: JobSpec,
    depends: list[list[str]],
    indices: list[int],
    token: str | None,
    *,
    max_running: int,
) -> st.JobMeta:
    signal = spec.warning_signal
    cwd = os.getcwd()
    return {
        "id": job,
        "name": spec.name,
        "tasks": [st.task_id(job, i) for i in indices] or [str(job)],
        "array": bool(indices),
        "limit": spec.array_limit(),
        "max_running": max_running,
        "depends": depends,
        "walltime": spec.resources.walltime,
        "signal": (
            {"name": signal.name, "seconds": signal.seconds, "batch_shell": signal.batch_shell}
            if signal
            else None
        ),
        "begin": spec.begin.timestamp() if spec.begin else None,
        "deadline": spec.deadline.timestamp() if spec.deadline else None,
        "workdir": os.path.join(cwd, spec.workdir) if spec.workdir else cwd,
        "stdout": spec.stdout,
        "stderr": spec.stderr,
        "requeue": spec.requeue,
        "token": token,
        "submit": st.now(),
        # What the job was given, for the accounting ledger (Slurm allocates ntasks x cpus).
        "user": getpass.getuser(),
        "cpus": spec.resources.ntasks * spec.resources.cpus_per_task,
        "gpus": spec.resources.gpus,
        "memory_mb": spec.resources.memory,
    }


def _record(meta: st.JobMeta, spec: JobSpec, index: int | None) -> st.Record:
    """A new task's record: pending, with the reason it will most likely show first."""
    reason = None
    if meta["depends"]:
        reason = st.DEPENDENCY_REASON
    elif meta["begin"] is not None and meta["begin"] > meta["submit"]:
        reason = st.BEGIN_REASON
    return {
        "id": st.task_id(meta["id"], index),
        "job": meta["id"],
        "index": index,
        "name": spec.name,
        "state": st.PENDING,
        "reason": reason,
        "held": spec.hold,
        "exit_code": None,
        "exit_signal": None,
        "node": None,
        "partition": spec.partition,
        "account": spec.account,
        "submit": meta["submit"],
        "start": None,
        "end": None,
        "restarts": 0,
        "pid": None,
        "runner": None,
    }


def _info(stored: st.Record) -> JobInfo:
    record = st.effective(stored)
    state = JobState(record["state"])
    held = state is JobState.PENDING and record["held"]
    index = record["index"]
    return JobInfo(
        job_id=record["id"],
        state=state,
        raw_state=record["state"],
        name=record["name"],
        reason=st.HELD_REASON if held else record["reason"],
        exit_code=record["exit_code"],
        exit_signal=record["exit_signal"],
        nodes=record["node"],
        partition=record["partition"],
        account=record["account"],
        submit_time=_utc(record["submit"]),
        start_time=_utc(record["start"]),
        end_time=_utc(record["end"]),
        array_job_id=str(record["job"]) if index is not None else None,
        array_task_id=index,
        restarts=record["restarts"],
    )


def _utc(moment: float | None) -> datetime | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC)


def _python_path() -> str:
    """PYTHONPATH for the runner: wherever this hpcbridge was imported from comes first."""
    package_root = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(part for part in (package_root, inherited) if part)
