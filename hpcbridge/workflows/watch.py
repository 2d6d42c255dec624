"""Retries of a workflow's stages, and a watcher that makes them until the workflow ends.

A stage that ended in one of its ``retry.on`` states with attempts left is submitted again,
with the stages its failure cancelled; the backoff is the scheduler's to wait (the retry's
begin time), so nothing here sleeps but the watcher between its polls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hpcbridge.jobs.state import JobState
from hpcbridge.workflows.run import submit_stages
from hpcbridge.workflows.status import StageStatus, workflow_status

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore


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
            submit_stages(cluster, record, rerun, kept_ids, None, updates=updates, why=reasons)
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
