"""Where a workflow's stages stand, from one scheduler query: each stage's latest job, and
why a stage that has not started never will (a dependency failed).

A stage whose dependency can never hold (it waits ``afterok`` on a stage that failed) is
cancelled by the scheduler itself on both Slurm (``--kill-on-invalid-dep=yes``, or
``DependencyParameters=kill_invalid_depend``) and PBS (the server deletes it); the status
names the stage that failed and cancels whatever the scheduler left pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hpcbridge.errors import JobNotFound
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo, JobState
from hpcbridge.workflows.model import stage_dependencies

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.workflows.export import WorkflowView
    from hpcbridge.workflows.store import WorkflowRecord

NOT_SUBMITTED = "NOT_SUBMITTED"


_CANCELLED_HERE = "; cancelled by hpcbridge"


@dataclass(frozen=True)
class StageStatus:
    """Where one stage stands: its latest job as the scheduler reports it, and why."""

    name: str
    job_id: str | None
    state: str  # a JobState value, or NOT_SUBMITTED
    info: JobInfo | None
    note: str = ""

    @property
    def keeps_job(self) -> bool:
        """Resume leaves this stage's job alone: it completed or may still run."""
        if self.state == NOT_SUBMITTED or self.note:
            return False
        return self.state == JobState.COMPLETED or not JobState(self.state).is_terminal


def workflow_status(cluster: Cluster, record: WorkflowRecord) -> list[StageStatus]:
    """Every stage's state from one scheduler query, in topological order.

    A stage still pending although a dependency can never hold is cancelled here (one
    cancel call for all) unless the scheduler already did; both are reported as cancelled,
    naming the stage that failed.
    """
    workflow = record.workflow
    latest = {name: record.latest_job(name) for name in workflow.order()}
    infos = cluster.backend.status([job_id for job_id in latest.values() if job_id])
    statuses: dict[str, StageStatus] = {}
    to_cancel: list[str] = []
    for name, job_id in latest.items():
        info = infos.get(job_id) if job_id else None
        state = _state_of(job_id, info)
        note = ""
        if job_id and info is None:
            note = f"the scheduler no longer knows job {job_id}"
        elif info is not None and info.state in (JobState.PENDING, JobState.CANCELLED):
            # An afterok stage cannot have run if its dependency failed, so a cancelled one
            # was cancelled for that reason, by the scheduler or by an earlier status.
            note = _blocked(workflow.stage(name), statuses)
            if note and info.state is JobState.PENDING and job_id:
                to_cancel.append(job_id)
                state, note = JobState.CANCELLED.value, note + _CANCELLED_HERE
        statuses[name] = StageStatus(name, job_id, state, info, note)
    if to_cancel:
        # JobNotFound: it ended between the query and the cancel, removed by the scheduler.
        with suppress(JobNotFound):
            cluster.cancel(to_cancel)
    return list(statuses.values())


def workflow_view(cluster: Cluster, record: WorkflowRecord) -> WorkflowView:
    """What workflow_export draws: the stored DAG with one status query's states and times."""
    from hpcbridge.workflows.export import StageView, WorkflowView

    stages = []
    for status in workflow_status(cluster, record):
        spec = record.workflow.stage(status.name)
        submissions = record.jobs.get(status.name, [])
        info = status.info
        stages.append(
            StageView(
                name=status.name,
                job_id=status.job_id,
                state=status.state,
                depends_on=tuple(stage_dependencies(spec)),
                walltime_s=cluster.site.prepare(spec).resources.walltime,
                submitted=submissions[-1].submitted if submissions else None,
                started=started_at(info),
                ended=info.end_time if info else None,
                note=status.note,
            )
        )
    return WorkflowView(record.workflow_id, record.workflow.name, tuple(stages))


def predicted_durations(
    cluster: Cluster, record: WorkflowRecord, ledger: Ledger, *, user: str
) -> dict[str, float]:
    """Each stage's expected run time from the ledger: earlier runs of the same job (the same
    ``<workflow>.<stage>`` name and walltime) or the user's share of what they request.

    A stage with neither a walltime nor any history is left out; the timeline then gives it
    its own default.
    """
    from hpcbridge.errors import ForecastError
    from hpcbridge.forecast.advice import runtime_history

    history = runtime_history(ledger, user=user)
    predicted: dict[str, float] = {}
    for stage in record.workflow.stages:
        walltime = cluster.site.prepare(stage).resources.walltime
        with suppress(ForecastError):
            job_name = record.workflow.job_name(stage.name)
            predicted[stage.name] = history.predict(user, job_name, walltime).seconds
    return predicted


def started_at(info: JobInfo | None) -> datetime | None:
    """When the job started; None while pending, when Slurm shows its expected start."""
    if info is None or info.state is JobState.PENDING:
        return None
    return info.start_time


def _state_of(job_id: str | None, info: JobInfo | None) -> str:
    if job_id is None:
        return NOT_SUBMITTED
    return info.state.value if info else JobState.UNKNOWN.value


def _blocked(stage: JobSpec, statuses: Mapping[str, StageStatus]) -> str:
    """Why a stage that has not started never will, naming the stage that failed; or ""."""
    for parent, condition in stage_dependencies(stage):
        status = statuses[parent]
        if condition == "afterany" or status.state in (NOT_SUBMITTED, JobState.UNKNOWN):
            continue
        state = JobState(status.state)
        if not state.is_terminal:
            continue
        if condition == "afterok" and state is not JobState.COMPLETED:
            if status.note.startswith("cancelled: "):  # name the stage that failed first
                return status.note.removesuffix(_CANCELLED_HERE)
            return f"cancelled: dependency {parent!r} ended {state.value}"
        if condition == "afternotok" and state is JobState.COMPLETED:
            return f"cancelled: dependency {parent!r} completed (afternotok)"
    return ""
