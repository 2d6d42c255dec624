"""The contract every backend fulfils, and helpers they share."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo, JobState


class Backend(Protocol):
    """One scheduler's commands, run through a transport."""

    name: str
    template: str
    # Said with "no such job": why a job that existed may no longer be found, if the
    # scheduler's settings explain it.
    missing_job_hint: str

    def template_context(self, spec: JobSpec) -> dict[str, Any]:
        """Scheduler-specific values the job template needs beyond the spec itself."""
        ...

    def submit(self, script: str, spec: JobSpec, token: str | None = None) -> str:
        """Submit a rendered script; return the new job id. Never submits twice.

        ``token`` is unique to this submission and rendered into the script (as the job
        comment), so a backend can find a job whose submission answer was lost.
        """
        ...

    def status(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """Current state of many jobs in one scheduler query; unknown ids are left out.

        An array job's id maps to the aggregate of its tasks, and each task is listed too.
        """
        ...

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs, pending or running."""
        ...

    def hold(self, job_ids: Sequence[str]) -> None:
        """Keep pending jobs from starting."""
        ...

    def release(self, job_ids: Sequence[str]) -> None:
        """Undo hold."""
        ...

    def requeue(self, job_ids: Sequence[str]) -> None:
        """Stop running (or finished) jobs and put them back in the queue."""
        ...

    def set_priority(self, job_ids: Sequence[str], *, qos: str | None, nice: int | None) -> None:
        """Move queued jobs to another priority: a QOS and/or a nice value (None: keep)."""
        ...

    def describe(self) -> str:
        """Reach the scheduler and say what answered: the site check uses this."""
        ...

    def close(self) -> None:
        """Release what the backend holds itself (the transport is the Cluster's to close)."""
        ...


# When array tasks end differently, the array as a whole reports the most telling ending.
_SEVERITY = [
    JobState.NODE_FAIL,
    JobState.BOOT_FAIL,
    JobState.OUT_OF_MEMORY,
    JobState.FAILED,
    JobState.TIMEOUT,
    JobState.DEADLINE,
    JobState.PREEMPTED,
    JobState.REVOKED,
    JobState.CANCELLED,
    JobState.COMPLETED,
]
_ACTIVITY = [JobState.RUNNING, JobState.COMPLETING, JobState.SUSPENDED, JobState.REQUEUED]


def aggregate_array(array_id: str, tasks: Iterable[JobInfo]) -> JobInfo:
    """One JobInfo for a whole array: unfinished while any task is, else the worst ending."""
    members = list(tasks)
    states = {task.state for task in members}
    unfinished = [task for task in members if not task.state.is_terminal]
    if unfinished:
        state = next((s for s in _ACTIVITY if s in states), unfinished[0].state)
    else:
        state = next((s for s in _SEVERITY if s in states), JobState.UNKNOWN)
    exit_codes = [task.exit_code for task in members if task.exit_code is not None]
    starts = [task.start_time for task in members if task.start_time]
    ends = [task.end_time for task in members if task.end_time]
    first = members[0]
    return JobInfo(
        job_id=array_id,
        state=state,
        raw_state=state.value,
        name=first.name,
        exit_code=max(exit_codes) if exit_codes and not unfinished else None,
        partition=first.partition,
        account=first.account,
        submit_time=first.submit_time,
        start_time=min(starts) if starts else None,
        end_time=max(ends) if ends and not unfinished else None,
        array_job_id=array_id,
    )


def with_array_totals(job_ids: Sequence[str], found: dict[str, JobInfo]) -> dict[str, JobInfo]:
    """Add an aggregate entry for each requested id that names an array of found tasks."""
    if all(job_id in found for job_id in job_ids):
        return found
    tasks_by_array: dict[str, list[JobInfo]] = defaultdict(list)
    for info in found.values():
        if info.array_job_id is not None:
            tasks_by_array[info.array_job_id].append(info)
    for job_id in job_ids:
        if job_id not in found and tasks_by_array.get(job_id):
            found[job_id] = aggregate_array(job_id, tasks_by_array[job_id])
    return found
