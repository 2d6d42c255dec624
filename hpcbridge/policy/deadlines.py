"""Deadlines move priorities: an account's queued jobs rise through the site's levels as its
deadline comes near, and go back when it moves away.

The rule, the same on every site so that people can check it by hand:

- remaining work = the predicted run time of the account's unfinished jobs at its current
  pace: their predicted core-seconds (a running job's prediction less what it has run) over
  the cores its running jobs hold now (at least the widest job's), and at least the longest
  single job's remainder. Predictions are the ledger's run-time predictor's (the user's
  recent runs of the same job, else their habit of over-asking, capped at the request).
- slack = time left before the deadline - remaining work.
- a queued job goes to the highest level among the site's ``deadline_steps`` whose
  ``slack_below`` the slack is under, unless it is already higher; when the slack grows
  again (or the deadline is cleared) a job the deadline raised gets back the level it had.

Only the scheduler's knobs move (``scontrol update`` QOS/Nice, ``qalter -p``): one queue
read for all accounts, one ledger read per user for the predictions, one ``set_priority``
call per level, one ledger write, so a deadline set or moved is in the queue in well under
a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hpcbridge.errors import ForecastError, SpecError
from hpcbridge.jobs.units import format_signed_duration as _clock
from hpcbridge.jobs.units import format_utc_minute
from hpcbridge.policy.levels import LevelChange, apply_changes, recorded_changes
from hpcbridge.policy.queue import QueuedJob, account_queue

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.forecast.runtime import RuntimeHistory
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import PriorityOptions


@dataclass(frozen=True)
class Deadline:
    """When an account's work is due, and who said so (``ledger``: set by a user; ``site``)."""

    account: str
    due: datetime
    source: str


@dataclass(frozen=True)
class Slack:
    """How an account with a deadline stands: the numbers behind its level."""

    account: str
    due: datetime | None  # None: the deadline was cleared
    time_left_s: int
    remaining_s: int
    slack_s: int
    level: str | None  # the level its deadline asks for; None: no raise
    running: int
    queued: int
    unpredicted: list[str]  # jobs with neither a time limit nor runs to predict from


@dataclass(frozen=True)
class Escalation:
    """What one pass decided and did."""

    slacks: list[Slack]
    changes: list[LevelChange]
    unchanged: list[str]  # queued jobs already at the level they should have


def deadlines(ledger: Ledger, options: PriorityOptions) -> dict[str, Deadline]:
    """Every account's deadline: the ledger's where set, else the site config's."""
    from sqlalchemy import select

    from hpcbridge.ledger.schema import Account, ProjectDeadline

    found = {account: Deadline(account, due, "site") for account, due in options.deadlines.items()}
    query = select(Account.name, ProjectDeadline.due).join(
        Account, Account.id == ProjectDeadline.account_id
    )
    with ledger.transaction(read_only=True) as connection:
        for account, due in connection.execute(query):
            found[account] = Deadline(account, due, "ledger")
    return found


def move_deadline(
    cluster: Cluster, ledger: Ledger, account: str, due: datetime | None
) -> Escalation:
    """Record ``account``'s new deadline (None: clear it) and apply it to its queued jobs at
    once. A cleared ledger deadline leaves the site config's, if it has one, in force."""
    from hpcbridge.policy.budget import submitting_user

    if not cluster.site.priorities.levels:
        raise SpecError(
            f"site {cluster.site.name} defines no priority levels, so a deadline has nothing "
            "to raise; add priorities.levels to its config"
        )
    ledger.set_deadline(account, due, who=submitting_user(cluster.site))
    return escalate(cluster, ledger, accounts=[account])


def escalate(
    cluster: Cluster,
    ledger: Ledger,
    *,
    accounts: Sequence[str] | None = None,
    now: datetime | None = None,
    apply: bool = True,
) -> Escalation:
    """Bring the queued jobs of every account with a deadline (or of ``accounts``, with or
    without one) to the level the rule gives; with ``apply=False`` only say what it would do.
    Cron-safe: a pass that finds everything in place changes nothing."""
    site = cluster.site
    options = site.priorities
    moment = now or datetime.now(UTC)
    due = deadlines(ledger, options)
    chosen = sorted(due) if accounts is None else list(accounts)
    if not chosen:
        return Escalation([], [], [])
    queue = account_queue(cluster, chosen[0] if len(chosen) == 1 else None)
    by_account: dict[str, list[QueuedJob]] = {account: [] for account in chosen}
    for job in queue:
        if job.account in by_account:
            by_account[job.account].append(job)
    histories = _histories(ledger, {job.user or "" for jobs in by_account.values() for job in jobs})
    cluster_name = site.cluster_name or site.name
    queued_ids = [job.job_id for jobs in by_account.values() for job in jobs if not job.running]
    raised_from = _levels_before_deadline(ledger, cluster_name, queued_ids)
    slacks, wanted, unchanged = [], [], []
    for account in chosen:
        jobs = by_account[account]
        slack = account_slack(
            account, due.get(account), jobs, histories=histories, options=options, now=moment
        )
        slacks.append(slack)
        for job in jobs:
            if job.running:
                continue
            change = _change(job, slack, options, raised_from)
            if change is None:
                unchanged.append(job.job_id)
            else:
                wanted.append(change)
    done = apply_changes(cluster, ledger, wanted, now=moment) if apply else wanted
    return Escalation(slacks, done, unchanged)


def account_slack(
    account: str,
    deadline: Deadline | None,
    jobs: Sequence[QueuedJob],
    *,
    histories: Mapping[str, RuntimeHistory],
    options: PriorityOptions,
    now: datetime,
) -> Slack:
    """Where ``account`` stands against its deadline (None: it has none): the rule in the
    module docstring, given its unfinished jobs and each user's run-time predictor."""
    running = [job for job in jobs if job.running]
    remainders, unpredicted = {}, []
    for job in jobs:
        seconds = _remainder(job, histories[job.user or ""])
        if seconds is None:
            unpredicted.append(job.job_id)
        else:
            remainders[job.job_id] = (seconds, max(job.cores, 1))
    pace = max([sum(max(job.cores, 1) for job in running)] + [c for _, c in remainders.values()])
    core_seconds = sum(seconds * cores for seconds, cores in remainders.values())
    longest = max((seconds for seconds, _ in remainders.values()), default=0)
    remaining = max(longest, math.ceil(core_seconds / pace)) if pace else 0
    queued = len(jobs) - len(running)
    if deadline is None:
        return Slack(account, None, 0, remaining, 0, None, len(running), queued, unpredicted)
    time_left = int((deadline.due - now).total_seconds())
    slack = time_left - remaining
    steps = [step for step in options.steps() if slack < step.slack_below]
    ranks = {name: index for index, name in enumerate(options.levels)}
    level = max((step.level for step in steps), key=ranks.__getitem__, default=None)
    return Slack(
        account, deadline.due, time_left, remaining, slack, level, len(running), queued, unpredicted
    )


def _remainder(job: QueuedJob, history: RuntimeHistory) -> int | None:
    """Predicted seconds the job still needs (None: nothing to predict from)."""
    try:
        predicted = history.predict(job.user, job.name, job.limit_s).seconds
    except ForecastError:
        return None
    left = max(0, predicted - job.used_s)
    return left if job.seconds_left is None else min(left, job.seconds_left)


def _change(
    job: QueuedJob,
    slack: Slack,
    options: PriorityOptions,
    raised_from: Mapping[str, tuple[str | None, str]],
) -> LevelChange | None:
    """Where the deadline puts a queued job: up to its level, or back to where it was."""
    current = options.level_of(job.qos, job.nice)
    ranks = {name: index for index, name in enumerate(options.levels)}
    before, raised_to = raised_from.get(job.job_id, (None, ""))
    own = before if raised_to and raised_to == current else current
    target = own
    if slack.level is not None and (own is None or ranks[slack.level] > ranks[own]):
        target = slack.level
    if target is None or target == current:
        return None
    reason = _reason(slack, target, own)
    return LevelChange(job.job_id, current, target, reason, "deadline", account=slack.account)


def _reason(slack: Slack, target: str, own: str | None) -> str:
    if slack.due is None:
        return f"deadline of {slack.account} cleared: back to {target}"
    numbers = (
        f"slack {_clock(slack.slack_s)} = time left {_clock(slack.time_left_s)} - "
        f"predicted remaining work {_clock(slack.remaining_s)}"
    )
    when = f"deadline {format_utc_minute(slack.due)}"
    if target == slack.level and target != own:
        return f"{when}: {numbers}; raised to {target}"
    return f"{when}: {numbers}; back to {target}"


def _histories(ledger: Ledger, users: Iterable[str]) -> dict[str, RuntimeHistory]:
    """The run-time predictor per user, fed from the ledger once each."""
    from hpcbridge.forecast.advice import runtime_history

    return {user: runtime_history(ledger, user=user) for user in users}


def _levels_before_deadline(
    ledger: Ledger, cluster: str, job_ids: Sequence[str]
) -> dict[str, tuple[str | None, str]]:
    """Jobs whose latest recorded change is a deadline's -> (the level they had before the
    deadline first raised them, the level it last set)."""
    found: dict[str, tuple[str | None, str]] = {}
    for job, cause, old, new in recorded_changes(ledger, cluster, job_ids):
        if cause != "deadline":
            found.pop(job, None)
        else:
            found[job] = (found[job][0] if job in found else old, new)
    return found
