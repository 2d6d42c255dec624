"""Workflows: named stages whose dependencies become the scheduler's own dependency flags.

A workflow (workflows.model) is checked whole first; then every stage is submitted once, in
topological order, with ``--dependency`` (Slurm) or ``-W depend`` (PBS) naming the job ids of
the stages it waits on, so the scheduler runs the DAG after the client has exited. hpcbridge
keeps only the stage -> job id mapping (hpcbridge.workflows.store), from which ``status``
(hpcbridge.workflows.status), ``resume`` (here) and retries (hpcbridge.workflows.watch)
work later, from any process, with one scheduler query per call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hpcbridge.errors import HpcBridgeError, SpecError, SubmitError, WorkflowError
from hpcbridge.jobs.sections import Dependency
from hpcbridge.jobs.state import JobState
from hpcbridge.workflows.budget_hold import check_budgets, record_waiting
from hpcbridge.workflows.model import Workflow, stage_dependencies
from hpcbridge.workflows.status import StageStatus, workflow_status

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore

# What sbatch says when --exclude leaves no node that could run the job, or names a node
# that is no longer configured (slurm/src/common/slurm_errno.c).
_EXCLUSION_REFUSED = ("Requested node configuration is not available", "Invalid node name")


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
    site with budgets the whole workflow is checked against them (:func:`check_budgets`);
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
    held = check_budgets(cluster, ledger, workflow, order, notify)
    try:
        submit_stages(cluster, record, order, {}, progress, hold=held.stages)
    except HpcBridgeError as exc:
        exc.add_note(
            f"workflow {record.workflow_id}: {len(record.jobs)} of {len(order)} stages were "
            f"submitted; `hpcbridge workflow resume {record.workflow_id}` submits the rest"
        )
        raise
    finally:
        store.save(record)
        record_waiting(cluster, record, held)
    if ledger is not None and feasibility is not None:
        track_workflow(cluster, ledger, record, feasibility)
    return record


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
        held = check_budgets(cluster, ledger, record.workflow, rerun, notify)
        avoid = _failed_nodes(cluster, [statuses[name] for name in rerun])
        try:
            submit_stages(cluster, record, rerun, kept_ids, progress, avoid=avoid, hold=held.stages)
        finally:
            store.save(record)
            record_waiting(cluster, record, held)
    return record, rerun, skipped


def submit_stages(
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


def _check_site(cluster: Cluster, workflow: Workflow, names: Sequence[str]) -> None:
    """Check stages against the site's limits, so none is submitted if one would be refused."""
    for name in names:
        try:
            cluster.site.prepare(workflow.stage(name))
        except SpecError as exc:
            raise SpecError(f"stage {name!r}: {exc}") from exc


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
