"""Workflows: named stages whose dependencies become the scheduler's own dependency flags.

A workflow (workflows.model) is checked whole first; then every stage is submitted once, in
topological order, with ``--dependency`` (Slurm) or ``-W depend`` (PBS) naming the job ids of
the stages it waits on, so the scheduler runs the DAG after the client has exited. hpcbridge
keeps only the stage -> job id mapping (hpcbridge.workflows.store), from which ``status`` and
``resume`` work later, from any process, with one scheduler query per call.

A stage whose dependency can never hold (it waits ``afterok`` on a stage that failed) is
cancelled by the scheduler itself on both Slurm (``--kill-on-invalid-dep=yes``, or
``DependencyParameters=kill_invalid_depend``) and PBS (the server deletes it); ``status``
names the stage that failed and cancels whatever the scheduler left pending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hpcbridge.errors import HpcBridgeError, JobNotFound, SpecError, SubmitError, WorkflowError
from hpcbridge.jobs.sections import Dependency
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo, JobState

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.budget import Decision
    from hpcbridge.workflows.export import WorkflowView
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore

from hpcbridge.workflows.model import Workflow, stage_dependencies

NOT_SUBMITTED = "NOT_SUBMITTED"
# What sbatch says when --exclude leaves no node that could run the job, or names a node
# that is no longer configured (slurm/src/common/slurm_errno.c).
_EXCLUSION_REFUSED = ("Requested node configuration is not available", "Invalid node name")
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


def submit_workflow(
    cluster: Cluster,
    workflow: Workflow,
    store: WorkflowStore,
    *,
    site: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    ledger: Ledger | None = None,
    notify: Callable[[str], None] | None = None,
    force: bool = False,
    on_risk: str | None = None,
) -> WorkflowRecord:
    """Submit every stage with native dependencies; the record is saved even if one fails,
    and the error then carries a note naming the workflow id to resume.

    ``site`` is what a later process passes to Cluster.from_site (default: the site's name).
    With a ``ledger``, a workflow deadline is checked first (refused when infeasible unless
    ``force``; at risk, raised a level with ``on_risk`` ``raise``) and then tracked, and on a
    site with budgets the whole workflow is checked against them (:func:`_check_budgets`);
    ``notify`` hears the verdict, the warnings and which stages wait held.
    """
    from hpcbridge.workflows.deadlines import plan_workflow, track_workflow
    from hpcbridge.workflows.store import WorkflowRecord

    feasibility = None
    if ledger is not None:
        workflow, feasibility = plan_workflow(
            cluster, ledger, workflow, force=force, on_risk=on_risk, notify=notify
        )
    elif workflow.deadline is not None and notify is not None:
        notify(f"workflow {workflow.name}: its deadline is not checked without a ledger")
    record = WorkflowRecord.new(workflow, site or cluster.site.name)
    order = workflow.order()
    _check_site(cluster, workflow, order)
    held = _check_budgets(cluster, ledger, workflow, order, notify)
    try:
        _submit_stages(cluster, record, order, {}, progress, hold=held.stages)
    except HpcBridgeError as exc:
        exc.add_note(
            f"workflow {record.workflow_id}: {len(record.jobs)} of {len(order)} stages were "
            f"submitted; `hpcbridge workflow resume {record.workflow_id}` submits the rest"
        )
        raise
    finally:
        store.save(record)
        _record_waiting(cluster, record, held)
    if ledger is not None and feasibility is not None:
        track_workflow(cluster, ledger, record, feasibility)
    return record


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


def resume_workflow(
    cluster: Cluster,
    store: WorkflowStore,
    workflow_id: str,
    *,
    workflow: Workflow | None = None,
    progress: Callable[[int, int], None] | None = None,
    ledger: Ledger | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[WorkflowRecord, list[str], dict[str, str]]:
    """Resubmit failed, cancelled and never-submitted stages, wired to the jobs kept.

    Completed stages and those still pending or running keep their jobs. ``workflow`` (a
    fixed file) gives new specs for the stages resubmitted and must have the same stage
    names. Returns the record, the stages resubmitted, and the stages that cannot run
    (an afternotok dependency completed) with the reason. ``ledger`` and ``notify`` as for
    :func:`submit_workflow`: the stages resubmitted are checked against budgets together
    (those kept are in the queue, so already counted as committed).
    """
    with store.locked(workflow_id):
        record = store.load(workflow_id)
        statuses = {s.name: s for s in workflow_status(cluster, record)}
        unknown = [s for s in statuses.values() if s.job_id and s.info is None]
        if unknown:
            raise WorkflowError(
                f"workflow {workflow_id}: the scheduler no longer knows job "
                f"{unknown[0].job_id} of stage {unknown[0].name!r}, so whether to rerun it "
                "cannot be told"
            )
        kept = {name: s for name, s in statuses.items() if s.keeps_job}
        if workflow is not None:
            record.workflow = _merged(record.workflow, workflow, kept)
        rerun = [name for name in record.workflow.order() if name not in kept]
        skipped = _never_runnable(record.workflow, rerun, kept)
        rerun = [name for name in rerun if name not in skipped]
        kept_ids = {
            name: s.job_id for name, s in kept.items() if s.job_id and s.state != JobState.COMPLETED
        }
        _check_site(cluster, record.workflow, rerun)
        held = _check_budgets(cluster, ledger, record.workflow, rerun, notify)
        avoid = _failed_nodes(cluster, [statuses[name] for name in rerun])
        try:
            _submit_stages(
                cluster, record, rerun, kept_ids, progress, avoid=avoid, hold=held.stages
            )
        finally:
            store.save(record)
            _record_waiting(cluster, record, held)
    return record, rerun, skipped


def retry_workflow(
    cluster: Cluster,
    store: WorkflowStore,
    workflow_id: str,
    *,
    now: datetime | None = None,
) -> tuple[WorkflowRecord, dict[str, str]]:
    """Resubmit the stages whose latest job ended in one of their ``retry.on`` states with
    attempts left, and the stages after them that were not kept (their failure cancelled
    them); any other ending stays as it is. Returns the record and the stages resubmitted,
    each with why (the retried ones) or "after <stage>".

    The backoff is the scheduler's to wait: a retry is submitted at once with its begin time
    (``--begin``, ``qsub -a``) that long after the failed run ended, so nothing here sleeps
    and a watcher that stops loses nothing. After OUT_OF_MEMORY the memory is raised from
    what the last attempt asked for.
    """
    import networkx as nx

    from hpcbridge.jobs.retry import retry_after

    moment = now or datetime.now().astimezone()
    with store.locked(workflow_id):
        record = store.load(workflow_id)
        statuses = {s.name: s for s in workflow_status(cluster, record)}
        updates: dict[str, dict[str, Any]] = {}
        reasons: dict[str, str] = {}
        for name, status in statuses.items():
            if status.keeps_job or status.info is None:
                continue
            runs = record.jobs.get(name, [])
            stage = record.workflow.stage(name)
            memory = runs[-1].memory_mb if runs and runs[-1].memory_mb else None
            if memory is not None:
                stage = stage.model_copy(
                    update={"resources": stage.resources.model_copy(update={"memory": memory})}
                )
            plan = retry_after(stage, status.info.state, len(runs))
            if plan is None:
                continue
            ended = status.info.end_time or moment
            begin = ended + timedelta(seconds=plan.delay_s)
            updates[name] = {"resources": plan.spec.resources}
            if begin > moment:
                updates[name]["begin"] = begin
            reasons[name] = plan.reason
        graph = record.workflow.graph
        after = {
            later: f"after {name}"
            for name in reasons
            for later in nx.descendants(graph, name)
            if not statuses[later].keeps_job and later not in reasons
        }
        rerun = [name for name in record.workflow.order() if name in reasons or name in after]
        if not rerun:
            return record, {}
        kept_ids = {
            name: s.job_id
            for name, s in statuses.items()
            if s.keeps_job and s.job_id and s.state != JobState.COMPLETED
        }
        try:
            _submit_stages(cluster, record, rerun, kept_ids, None, updates=updates, why=reasons)
        finally:
            store.save(record)
    return record, {name: reasons.get(name) or after[name] for name in rerun}


def watch_workflow(
    cluster: Cluster,
    store: WorkflowStore,
    workflow_id: str,
    *,
    interval: float,
    timeout: float | None = None,
    retried: Callable[[str, str | None, str], None] | None = None,
) -> tuple[WorkflowRecord, list[StageStatus]] | None:
    """Retry (:func:`retry_workflow`) every ``interval`` seconds until no stage may still
    run; the record and the final states, or None after ``timeout`` seconds. ``retried``
    hears each stage resubmitted: its name, new job id and why."""
    import time

    started = time.monotonic()
    while True:
        record, resubmitted = retry_workflow(cluster, store, workflow_id)
        for name, reason in resubmitted.items():
            if retried is not None:
                retried(name, record.latest_job(name), reason)
        stages = workflow_status(cluster, record)
        if not any(stage.keeps_job and stage.state != JobState.COMPLETED for stage in stages):
            return record, stages
        if timeout is not None and time.monotonic() - started > timeout:
            return None
        time.sleep(interval)


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


def _submit_stages(
    cluster: Cluster,
    record: WorkflowRecord,
    names: Sequence[str],
    job_ids: dict[str, str],
    progress: Callable[[int, int], None] | None,
    *,
    avoid: Mapping[str, str] | None = None,
    hold: frozenset[str] = frozenset(),
    updates: Mapping[str, Mapping[str, Any]] | None = None,
    why: Mapping[str, str] | None = None,
) -> None:
    """Submit ``names`` in order; ``job_ids`` maps the stages to wait on (others are done).

    A stage in ``avoid`` is first submitted excluding those nodes; if the scheduler says no
    other node could run it, it is submitted without the exclusion, and the record says so.
    A stage in ``hold`` is submitted held (waiting for budget). ``updates`` change a stage's
    spec for this submission (a retry's memory and begin time), recorded with ``why``.
    """
    avoid = avoid or {}
    updates = updates or {}
    why = why or {}
    workflow = record.workflow
    for done, name in enumerate(names, start=1):
        stage = workflow.stage(name)
        depends_on = [
            Dependency(condition=condition, job=job_ids[parent])
            for parent, condition in stage_dependencies(stage)
            if parent in job_ids
        ]
        update: dict[str, Any] = {
            "name": workflow.job_name(name),
            "depends_on": depends_on,
            "env": workflow.stage_env(stage),  # a scenario's metric file, for its results
        }
        if name in hold:
            update["hold"] = True
        spec = stage.model_copy(update={**update, **updates.get(name, {})})
        details: dict[str, Any] = {}
        if name in why:
            details.update(retry=why[name], memory_mb=spec.resources.memory)
        job_id = None
        if name in avoid:
            details["excluded"] = avoid[name]
            try:
                job_id = cluster.submit(spec.model_copy(update={"exclude_nodes": avoid[name]}))
            except SubmitError as exc:
                if not any(refusal in str(exc) for refusal in _EXCLUSION_REFUSED):
                    raise
                details["exclusion_refused"] = True
        job_ids[name] = job_id or cluster.submit(spec)
        record.add_job(name, job_ids[name], datetime.now().astimezone(), **details)
        if progress is not None:
            progress(done, len(names))


@dataclass(frozen=True)
class _BudgetHold:
    """Stages to submit held because the workflow does not fit a budget, and why."""

    stages: frozenset[str] = frozenset()
    submitted: tuple[str, ...] = ()  # every stage checked, to be submitted
    decisions: tuple[Decision, ...] = ()  # the refused ones


def _check_budgets(
    cluster: Cluster,
    ledger: Ledger | None,
    workflow: Workflow,
    names: Sequence[str],
    notify: Callable[[str], None] | None,
) -> _BudgetHold:
    """Set the stages ``names`` together against their accounts' budgets, before any is
    submitted, so a workflow is never half-submitted for budget.

    Every stage counts with its worst case, whether it will run or not (an afternotok stage
    may): the scheduler lets every one run. Over budget it is refused whole (BudgetExceeded),
    or with ``on_exhausted: hold`` its entry stages (those waiting on no stage submitted now)
    are held, so nothing of it starts until ``budget release`` finds the whole fits.
    """
    from hpcbridge.errors import BudgetExceeded
    from hpcbridge.policy.budget import check_jobs

    if ledger is None or not cluster.site.budgets.accounts or not names:
        return _BudgetHold()
    stages = [workflow.stage(name) for name in names]
    decisions = check_jobs(cluster, ledger, stages, workflow=workflow.name)
    refused = tuple(decision for decision in decisions if not decision.allowed)
    said = [text for d in decisions for text in (d.refusals or d.warnings)]
    if refused and cluster.site.budgets.on_exhausted == "refuse":
        raise BudgetExceeded("; ".join(text for d in refused for text in d.refusals))
    if notify is not None:
        for text in said:
            notify(text)
    if not refused:
        return _BudgetHold()
    entry = [
        name
        for name in names
        if not any(parent in names for parent, _ in stage_dependencies(workflow.stage(name)))
    ]
    if notify is not None:
        notify(
            f"workflow {workflow.name}: stage{'' if len(entry) == 1 else 's'} "
            f"{', '.join(entry)} held until budget frees up (hpcbridge budget release)"
        )
    return _BudgetHold(frozenset(entry), tuple(names), refused)


def _record_waiting(cluster: Cluster, record: WorkflowRecord, held: _BudgetHold) -> None:
    """Record the held entry stages as waiting for budget, with the workflow's worst case.

    One record per workflow: its held entry stages are released together, and it covers
    every stage of the account submitted now, which therefore does not count as committed
    twice. A workflow over several budgeted accounts waits on the first one refused.
    """
    from hpcbridge.policy.budget import submitting_user
    from hpcbridge.policy.waiting import WaitingJobs

    released = [
        job
        for name in record.workflow.order()
        if name in held.stages
        for job in [record.latest_job(name)]
        if job
    ]
    if not held.decisions or not released:
        return
    decision = held.decisions[0]
    account = decision.budgets[0].account
    site = cluster.site
    covers = [
        job
        for name in held.submitted
        if site.prepare(record.workflow.stage(name)).account == account
        for job in [record.latest_job(name)]
        if job
    ]
    WaitingJobs(site.name).add(
        released[0],
        account=account,
        user=submitting_user(site),
        worst_case=(decision.cost.core_hours, decision.cost.gpu_hours),
        reason="; ".join(text for d in held.decisions for text in d.refusals),
        release=released,
        covers=covers,
    )


def _failed_nodes(cluster: Cluster, statuses: Sequence[StageStatus]) -> dict[str, str]:
    """The nodes each stage's last job failed on, for stages that ended NODE_FAIL/BOOT_FAIL.

    Only Slurm can be asked to avoid nodes (sbatch --exclude); elsewhere a down node is left
    out by the scheduler itself while it stays down.
    """
    if cluster.backend.name != "slurm":
        return {}
    return {
        status.name: status.info.nodes
        for status in statuses
        if status.info is not None
        and status.info.state in (JobState.NODE_FAIL, JobState.BOOT_FAIL)
        and status.info.nodes
    }


def started_at(info: JobInfo | None) -> datetime | None:
    """When the job started; None while pending, when Slurm shows its expected start."""
    if info is None or info.state is JobState.PENDING:
        return None
    return info.start_time


def _check_site(cluster: Cluster, workflow: Workflow, names: Sequence[str]) -> None:
    """Check stages against the site's limits, so none is submitted if one would be refused."""
    for name in names:
        try:
            cluster.site.prepare(workflow.stage(name))
        except SpecError as exc:
            raise SpecError(f"stage {name!r}: {exc}") from exc


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


def _never_runnable(
    workflow: Workflow, rerun: Sequence[str], kept: Mapping[str, StageStatus]
) -> dict[str, str]:
    """Stages to rerun that wait afternotok on a completed stage, or on such a stage."""
    skipped: dict[str, str] = {}
    for name in rerun:
        for parent, condition in stage_dependencies(workflow.stage(name)):
            if parent in skipped:
                skipped[name] = f"dependency {parent!r} cannot run"
            elif (
                condition == "afternotok"
                and parent in kept
                and kept[parent].state == JobState.COMPLETED
            ):
                skipped[name] = f"dependency {parent!r} completed (afternotok)"
    return skipped


def _merged(stored: Workflow, fixed: Workflow, kept: Mapping[str, StageStatus]) -> Workflow:
    """The fixed file's specs for stages to rerun, the stored ones for stages kept."""
    old, new = {s.name for s in stored.stages}, {s.name for s in fixed.stages}
    if old != new:
        raise SpecError(
            f"the fixed workflow must have the same stages as workflow {stored.name}; "
            f"missing {sorted(old - new)}, added {sorted(new - old)}"
        )
    stages = [stored.stage(s.name) if s.name in kept else s for s in fixed.stages]
    return Workflow.parse({"name": stored.name, "stages": stages}, source="fixed workflow")
