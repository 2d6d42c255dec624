"""``hpcbridge budget release``: jobs held for budget let go once they fit, oldest first.

Safe to run from cron as often as wanted: the record of waiting jobs (policy.waiting) is
changed under its lock, so a second release while one runs returns ``busy``; each run reads
the queue once and each account's budget once, and a job released or cancelled by hand is
dropped from the record. Run it after raising an allocation, or regularly so rolling months
and new grant periods free what they free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hpcbridge.policy.budget import Budget, Cost, read_budgets
from hpcbridge.policy.waiting import Record, WaitingJobs, covered, to_release

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.queue import QueuedJob


@dataclass(frozen=True)
class Released:
    """What one release did: jobs let go, jobs still waiting, records dropped (jobs that
    ended or were released by hand). ``busy`` when another release held the lock."""

    released: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    busy: bool = False


def release_waiting(
    cluster: Cluster, ledger: Ledger, *, now: datetime | None = None, wait: float = 0.0
) -> Released:
    """Release the jobs waiting for budget that now fit, in one release call; a second run
    while one holds the lock returns ``busy`` (or waits ``wait`` seconds)."""
    from filelock import Timeout

    from hpcbridge.policy.queue import account_queue

    store = WaitingJobs(cluster.site.name)
    moment = now or datetime.now(UTC)
    try:
        with store.changing(timeout=wait) as records:
            if not records:
                return Released()
            queue = account_queue(cluster)
            held = {job.job_id for job in queue if job.held}
            dropped = tuple(job_id for job_id in records if job_id not in held)
            for job_id in dropped:
                del records[job_id]
            fitting = _fitting(cluster, ledger, records, queue, moment)
            released = [job for job_id in fitting for job in to_release(job_id, records[job_id])]
            if released:
                cluster.release(released)
            for job_id in fitting:
                del records[job_id]
            return Released(tuple(released), tuple(records), dropped)
    except Timeout:
        return Released(busy=True)


def _fitting(
    cluster: Cluster,
    ledger: Ledger,
    records: dict[str, Record],
    queue: list[QueuedJob],
    now: datetime,
) -> list[str]:
    """The waiting jobs that fit, taken in submission order per account; each one released
    counts as committed for the next."""
    site = cluster.site
    chosen: list[str] = []
    by_account: dict[str, list[str]] = {}
    for job_id, record in sorted(records.items(), key=lambda item: item[1]["submitted"]):
        by_account.setdefault(record["account"], []).append(job_id)
    for account, job_ids in by_account.items():
        if account not in site.budgets.accounts:  # no budget any more: nothing to wait for
            chosen += job_ids
            continue
        mine = [job for job in queue if job.account == account]
        budgets = read_budgets(
            ledger, site, account, mine, user=None, now=now, waiting=covered(records)
        )
        extra: dict[str | None, Cost] = {}
        for job_id in job_ids:
            record = records[job_id]
            cost = Cost(record["core_hours"], record["gpu_hours"])
            applies = [b for b in budgets if b.user in (None, record["user"])]
            if all(_fits(b, cost + extra.get(b.user, Cost())) for b in applies):
                chosen.append(job_id)
                for budget in applies:
                    extra[budget.user] = extra.get(budget.user, Cost()) + cost
    return chosen


def _fits(budget: Budget, cost: Cost) -> bool:
    return budget.shortfall(cost) is None
