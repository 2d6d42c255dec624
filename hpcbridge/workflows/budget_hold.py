"""A workflow against its accounts' budgets, set whole before any stage is submitted: refused
whole, or its entry stages submitted held and recorded as waiting for budget together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcbridge.workflows.model import Workflow, stage_dependencies

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.budget import Decision
    from hpcbridge.workflows.store import WorkflowRecord


@dataclass(frozen=True)
class BudgetHold:
    """Stages to submit held because the workflow does not fit a budget, and why."""

    stages: frozenset[str] = frozenset()
    submitted: tuple[str, ...] = ()  # every stage checked, to be submitted
    decisions: tuple[Decision, ...] = ()  # the refused ones


def check_budgets(
    cluster: Cluster,
    ledger: Ledger | None,
    workflow: Workflow,
    names: Sequence[str],
    notify: Callable[[str], None] | None,
) -> BudgetHold:
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
        return BudgetHold()
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
        return BudgetHold()
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
    return BudgetHold(frozenset(entry), tuple(names), refused)


def record_waiting(cluster: Cluster, record: WorkflowRecord, held: BudgetHold) -> None:
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
