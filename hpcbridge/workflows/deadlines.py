"""A workflow's deadline checked before it is submitted, and every tracked deadline followed
until its work ends (hpcbridge.policy.feasibility makes the estimates).

A workflow's stages are estimated under their scheduler job names (``<workflow>.<stage>``),
which is how the ledger's run-time predictor knows their past runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hpcbridge.errors import WorkflowError
from hpcbridge.jobs.state import JobState
from hpcbridge.policy.feasibility import Feasibility, check_deadline, decide, track
from hpcbridge.workflows.model import stage_dependencies

if TYPE_CHECKING:
    from sqlalchemy import Row

    from hpcbridge.cluster import Cluster
    from hpcbridge.jobs.state import JobInfo
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.workflows.model import Workflow
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore


@dataclass(frozen=True)
class DeadlineRow:
    """Where one tracked job or workflow stands against its deadline."""

    kind: str
    ref: str
    name: str
    client: str | None
    deadline: datetime
    state: str  # "queued", "running", "done" or a failed stage's state
    projected_finish: datetime | None  # None: over, see finished_at
    slack_s: int | None
    verdict: str  # now; once over, the outcome ("met" or "missed")
    finished_at: datetime | None


def workflow_feasibility(
    cluster: Cluster,
    ledger: Ledger,
    workflow: Workflow,
    *,
    started: dict[str, datetime] | None = None,
    skip: Sequence[str] = (),
    now: datetime | None = None,
) -> Feasibility:
    """The estimate for the workflow's deadline; ``skip``: stages over already, ``started``:
    running stages and their start (both by stage name)."""
    if workflow.deadline is None:
        raise WorkflowError(f"workflow {workflow.name} has no deadline")
    names = [name for name in workflow.order() if name not in skip]
    specs = [
        cluster.site.prepare(workflow.stage(name)).model_copy(
            update={"name": workflow.job_name(name)}
        )
        for name in names
    ]
    parents = {
        workflow.job_name(name): [
            workflow.job_name(parent)
            for parent, _ in stage_dependencies(workflow.stage(name))
            if parent in names
        ]
        for name in names
    }
    running = {workflow.job_name(name): start for name, start in (started or {}).items()}
    return check_deadline(
        cluster, ledger, specs, parents, workflow.deadline, started=running, now=now
    )


def plan_workflow(
    cluster: Cluster,
    ledger: Ledger,
    workflow: Workflow,
    *,
    force: bool = False,
    on_risk: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[Workflow, Feasibility | None]:
    """Check the deadline before submission: refused when infeasible (unless ``force``);
    at risk with ``on_risk`` (default: the site's) ``raise``, every stage gets the next
    level up. Without a deadline, the workflow as it is."""
    if workflow.deadline is None:
        return workflow, None
    feasibility = workflow_feasibility(cluster, ledger, workflow)
    level, line = decide(
        feasibility,
        f"workflow {workflow.name}",
        force=force,
        on_risk=on_risk or cluster.site.deadlines.on_risk,
    )
    if notify is not None:
        notify(line)
    if level is not None:
        stages = tuple(stage.model_copy(update={"priority": level}) for stage in workflow.stages)
        workflow = workflow.model_copy(update={"stages": stages})
    return workflow, feasibility


def track_workflow(
    cluster: Cluster, ledger: Ledger, record: WorkflowRecord, feasibility: Feasibility
) -> None:
    """Follow a submitted workflow's deadline (its client: its first stage's account)."""
    first = cluster.site.prepare(record.workflow.stages[0])
    track(
        ledger,
        cluster.site.cluster_name or cluster.site.name,
        kind="workflow",
        ref=record.workflow_id,
        name=record.workflow.name,
        client=first.account,
        feasibility=feasibility,
        submitted_at=record.created,
    )


def deadline_rows(
    cluster: Cluster,
    ledger: Ledger,
    store: WorkflowStore,
    *,
    client: str | None = None,
    now: datetime | None = None,
) -> list[DeadlineRow]:
    """Every open deadline of this cluster (of ``client``), refreshed from one status call;
    those whose work is over are closed in the ledger as met or missed."""
    from sqlalchemy import select, update

    from hpcbridge.ledger.schema import TrackedDeadline

    moment = now or datetime.now(UTC)
    cluster_name = cluster.site.cluster_name or cluster.site.name
    table = TrackedDeadline.__table__
    query = select(table).where(table.c.cluster == cluster_name, table.c.outcome.is_(None))
    if client is not None:
        query = query.where(table.c.client == client)
    with ledger.transaction(read_only=True) as connection:
        tracked = list(connection.execute(query))
    records = {row.ref: store.load(row.ref) for row in tracked if row.kind == "workflow"}
    jobs = {row.id: _jobs_of(row.kind, row.ref, records.get(row.ref)) for row in tracked}
    wanted = sorted({job for stage_jobs in jobs.values() for job in stage_jobs.values() if job})
    infos = cluster.status(wanted) if wanted else {}
    rows, closed = [], []
    for row in tracked:
        stage_infos = {stage: infos.get(job) for stage, job in jobs[row.id].items() if job}
        result = _row(
            cluster, ledger, row, record=records.get(row.ref), infos=stage_infos, now=moment
        )
        rows.append(result)
        if result.finished_at is not None:
            closed.append((row.id, result.finished_at, result.verdict))
    if closed:
        with ledger.transaction() as connection:
            for row_id, finished, outcome in closed:
                connection.execute(
                    update(TrackedDeadline)
                    .where(TrackedDeadline.id == row_id)
                    .values(finished_at=finished, outcome=outcome)
                )
    return rows


def _jobs_of(kind: str, ref: str, record: WorkflowRecord | None) -> dict[str, str | None]:
    """Stage (or, for a job, the job itself) -> its latest job id."""
    if kind == "job" or record is None:
        return {ref: ref}
    return {stage.name: record.latest_job(stage.name) for stage in record.workflow.stages}


def _row(
    cluster: Cluster,
    ledger: Ledger,
    row: Row[Any],
    *,
    record: WorkflowRecord | None,
    infos: dict[str, JobInfo | None],
    now: datetime,
) -> DeadlineRow:
    """Over (every stage ended, or one failed: met or missed), or its projected finish."""
    states = {stage: info.state if info else JobState.UNKNOWN for stage, info in infos.items()}
    failed = [
        stage
        for stage, state in states.items()
        if state.is_terminal and state is not JobState.COMPLETED
    ]
    expected = len(record.workflow.stages) if record else 1
    over = len(states) == expected and all(state.is_terminal for state in states.values())
    known = (row.kind, row.ref, row.name, row.client, row.deadline)
    if over or failed:
        ends = [info.end_time for info in infos.values() if info and info.end_time]
        finished = max(ends, default=now)
        outcome = "met" if not failed and finished <= row.deadline else "missed"
        state = f"{failed[0]} {states[failed[0]].value}" if failed else "done"
        return DeadlineRow(*known, state, None, None, outcome, finished)
    running = {
        stage: info.start_time
        for stage, info in infos.items()
        if info and info.state is JobState.RUNNING and info.start_time
    }
    if record is not None:
        done = [stage for stage, state in states.items() if state is JobState.COMPLETED]
        estimate = workflow_feasibility(
            cluster, ledger, record.workflow, started=running, skip=done, now=now
        )
        projected, verdict = estimate.finish, estimate.verdict
    else:  # a job: the estimate made at submit, moved to now once passed
        projected = max(now, row.expected_finish)
        verdict = "likely" if projected <= row.deadline else "at risk"
    slack = int((row.deadline - projected).total_seconds())
    state = "running" if running else "queued"
    return DeadlineRow(*known, state, projected, slack, verdict, None)
