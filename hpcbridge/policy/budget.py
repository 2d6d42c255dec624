"""Budgets at submit: a job's worst case, what the account's jobs have committed, what is left.

A budget is an account's core-hours and GPU-hours per period, from the site config
(:class:`hpcbridge.site.BudgetOptions`): the ledger's allocation covering now, or a limit per
rolling month (the last 30 days); users of the account may have their own limit in the same
period. Before a job is submitted its worst case (cores x walltime and GPUs x walltime, for
an array every task) is added to what the account's queued and running jobs may still use
(their cores and GPUs x the time they have left, read from one scheduler call) and set
against what is left (the limit less the ledger's usage in the period). A job that does not
fit is refused with the numbers and the knob to change, or with ``on_exhausted: hold``
submitted held (the scheduler's own hold) and recorded as waiting for budget
(:mod:`hpcbridge.policy.waiting`), which ``hpcbridge budget release`` lets go once it fits
(:mod:`hpcbridge.policy.release`).

Jobs waiting for budget are not counted as committed: they cannot start until a release
checks them again. A job with no time limit in the queue commits nothing countable; it is
counted apart (``unbounded``). On PBS this check is the only one (PBS has no association
limits); on Slurm ``hpcbridge budget sync`` also writes the limits into slurmdbd.

Whatever the number of jobs, a decision reads the ledger twice (the allocation, and the
account's usage by user in the period, each one statement or transaction) and the scheduler
once.
"""

from __future__ import annotations

import getpass
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hpcbridge.errors import BudgetExceeded, SpecError
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.ledger.usage import allocation_at, usage_report
from hpcbridge.policy.queue import QueuedJob, account_queue

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import AccountBudget, SiteConfig

ROLLING_PERIOD = timedelta(days=30)
"""``period: month`` is the 30 days up to now: budget comes back as old usage leaves it."""
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Cost:
    """Core-hours and GPU-hours, used, committed or asked for."""

    core_hours: float = 0.0
    gpu_hours: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.core_hours + other.core_hours, self.gpu_hours + other.gpu_hours)


def worst_case(spec: JobSpec, scheduler: str) -> Cost:
    """What a prepared job may use at most: every task for its whole walltime.

    Cores are ntasks x cpus_per_task; GPUs are ``gpus`` per node on Slurm (``--gres`` is
    per node) and in all on PBS (select chunks split them over the nodes).
    """
    resources = spec.resources
    if resources.walltime is None:
        raise SpecError(
            f"resources.walltime: job {spec.name} has none and its partition no default, so "
            f"its worst case under account {spec.account}'s budget has no bound; set one"
        )
    tasks = len(spec.array_indices()) or 1
    gpus = resources.gpus * (resources.nodes if scheduler == "slurm" else 1)
    hours = tasks * resources.walltime / _HOUR
    return Cost(resources.ntasks * resources.cpus_per_task * hours, gpus * hours)


@dataclass(frozen=True, slots=True)
class Commitment:
    """What queued and running jobs may still use (their cores and GPUs x time left)."""

    cost: Cost = Cost()
    queued: int = 0
    running: int = 0
    unbounded: int = 0  # jobs without a time limit, whose use cannot be bounded

    def words(self) -> str:
        """ "14 queued jobs", "3 running and 11 queued jobs"."""
        parts = [f"{self.running} running"] if self.running else []
        parts += [f"{self.queued} queued"] if self.queued or not self.running else []
        total = self.running + self.queued
        return f"{' and '.join(parts)} job{'' if total == 1 else 's'}"


def committed(
    queue: Iterable[QueuedJob], *, user: str | None = None, waiting: Iterable[str] = ()
) -> Commitment:
    """The commitment of ``queue`` (of one user, if given), less the jobs waiting for budget."""
    excluded = set(waiting)
    core_s = gpu_s = 0.0
    queued = running = unbounded = 0
    for job in queue:  # plain sums: a queue may hold thousands of tasks
        if job.job_id in excluded or (user is not None and job.user != user):
            continue
        if job.running:
            running += 1
        else:
            queued += 1
        if job.seconds_left is None:
            unbounded += 1
            continue
        core_s += job.cores * job.seconds_left
        gpu_s += job.gpus * job.seconds_left
    return Commitment(Cost(core_s / _HOUR, gpu_s / _HOUR), queued, running, unbounded)


@dataclass(frozen=True)
class Budget:
    """The standing of one budget now: an account's (``user`` None) or one user's in it."""

    account: str
    user: str | None
    starts: datetime
    ends: datetime | None  # None: a rolling month, which never ends
    limit: Cost | None  # None: no allocation covers now
    limits_gpu: bool  # whether GPU-hours are limited at all
    limits_cores: bool
    used: Cost
    committed: Commitment
    knob: str  # what to change to give it more

    @property
    def scope(self) -> str:
        return f"budget {self.account}" + (f" (user {self.user})" if self.user else "")

    @property
    def left(self) -> Cost:
        """What the limit leaves after the ledger's usage (zero without an allocation)."""
        limit = self.limit or Cost()
        return Cost(limit.core_hours - self.used.core_hours, limit.gpu_hours - self.used.gpu_hours)

    def shortfall(self, cost: Cost, what: str = "this job") -> str | None:
        """Why ``cost`` (of ``what``: "this job", "workflow w's 3 stages together") does not
        fit, in words with the numbers and the knob; None if it does."""
        problems = [
            f"{_amount(left)} {unit} left, {_amount(held)} committed by "
            f"{self.committed.words()}; {what} may use {_amount(asked)}"
            for unit, limited, left, held, asked in self._dimensions(cost)
            if limited and held + asked > left + 1e-9
        ]
        if not problems:
            return None
        missing = "" if self.limit is not None else "no allocation covers now; "
        return f"{self.scope}: {missing}{'; '.join(problems)} ({self.knob})"

    def warning(self, cost: Cost, percent: float, what: str = "this job") -> str | None:
        """Said when used + committed + ``cost`` (of ``what``) reaches ``percent`` of a limit."""
        limit = self.limit or Cost()
        notes = [
            f"{_amount(used)} of {_amount(whole)} {unit} ({100 * used / whole:.0f}%) used or "
            f"committed with {what}"
            for unit, limited, whole, used in (
                (
                    "core-hours",
                    self.limits_cores,
                    limit.core_hours,
                    self.used.core_hours + self.committed.cost.core_hours + cost.core_hours,
                ),
                (
                    "GPU-hours",
                    self.limits_gpu,
                    limit.gpu_hours,
                    self.used.gpu_hours + self.committed.cost.gpu_hours + cost.gpu_hours,
                ),
            )
            if limited and whole > 0 and 100 * used / whole >= percent
        ]
        return f"{self.scope}: {'; '.join(notes)}" if notes else None

    def _dimensions(self, cost: Cost) -> list[tuple[str, bool, float, float, float]]:
        left, held = self.left, self.committed.cost
        return [
            ("core-hours", self.limits_cores, left.core_hours, held.core_hours, cost.core_hours),
            ("GPU-hours", self.limits_gpu, left.gpu_hours, held.gpu_hours, cost.gpu_hours),
        ]


@dataclass(frozen=True)
class Decision:
    """Whether a job fits every budget it falls under, and what was said about each."""

    cost: Cost
    budgets: tuple[Budget, ...]
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.refusals


def decide(
    cost: Cost, budgets: Sequence[Budget], warn_at: float, what: str = "this job"
) -> Decision:
    """Set ``cost`` (of ``what``) against each budget: refusals where it does not fit, else
    warnings."""
    refusals = tuple(r for r in (b.shortfall(cost, what) for b in budgets) if r)
    warnings = (
        () if refusals else tuple(w for w in (b.warning(cost, warn_at, what) for b in budgets) if w)
    )
    return Decision(cost, tuple(budgets), refusals, warnings)


def read_budgets(
    ledger: Ledger,
    site: SiteConfig,
    account: str,
    queue: Sequence[QueuedJob],
    *,
    user: str | None,
    now: datetime,
    waiting: Iterable[str] = (),
) -> list[Budget]:
    """The account's budget and (if the site limits them) its users' or ``user``'s, now.

    ``user`` None reads every user the site limits (``budget show``); a user's budget is the
    account's period with the user's own limit.
    """
    config = site.budgets.accounts[account]
    waiting = set(waiting)
    starts, ends, limit = _period(ledger, site.name, account, config, now)
    by_user = _usage_by_user(ledger, account, starts, now)
    knob = _knob(site.name, account, None, config.period)
    budgets = [
        Budget(
            account,
            None,
            starts,
            ends,
            limit,
            limits_cores=limit is None
            or config.period == "allocation"
            or config.core_hours is not None,
            limits_gpu=limit is None
            or config.period == "allocation"
            or config.gpu_hours is not None,
            used=sum(by_user.values(), Cost()),
            committed=committed(queue, waiting=waiting),
            knob=knob,
        )
    ]
    users = [user] if user is not None else sorted(config.users)
    for name in users:
        if name not in config.users:
            continue
        own = config.users[name]
        budgets.append(
            Budget(
                account,
                name,
                starts,
                ends,
                Cost(own.core_hours or 0.0, own.gpu_hours or 0.0),
                limits_cores=own.core_hours is not None,
                limits_gpu=own.gpu_hours is not None,
                used=by_user.get(name, Cost()),
                committed=committed(queue, user=name, waiting=waiting),
                knob=_knob(site.name, account, name, config.period),
            )
        )
    return budgets


@dataclass(frozen=True)
class Submitted:
    """A submission through the budget check: the job id, the decision (None: the account
    has no budget) and whether the job waits held for budget."""

    job_id: str
    decision: Decision | None
    held: bool = False
    warnings: tuple[str, ...] = field(default=())


def check(
    cluster: Cluster,
    ledger: Ledger,
    spec: JobSpec,
    *,
    user: str | None = None,
    now: datetime | None = None,
) -> Decision | None:
    """The budget decision for ``spec`` on ``cluster``; None when its account has no budget."""
    decisions = check_jobs(cluster, ledger, [spec], user=user, now=now)
    return decisions[0] if decisions else None


def check_jobs(
    cluster: Cluster,
    ledger: Ledger,
    specs: Sequence[JobSpec],
    *,
    workflow: str | None = None,
    unit: str = "stage",
    user: str | None = None,
    now: datetime | None = None,
) -> list[Decision]:
    """One decision per budgeted account among ``specs``, for their worst cases together.

    A workflow (or a sweep) must fit whole before any of it is submitted (a stage refused
    half-way would leave the rest waiting on it), so its jobs are summed per account and set
    against one queue call and one read of each account's budget. ``workflow`` names it in
    the wording ("workflow w's 3 stages together may use ...", ``unit`` "job" for a sweep);
    accounts without a budget are left out.
    """
    from hpcbridge.policy.waiting import WaitingJobs

    site = cluster.site
    costs: dict[str, Cost] = {}
    counts: dict[str, int] = {}
    for spec in specs:
        prepared = site.prepare(spec)
        account = prepared.account
        if account is None or account not in site.budgets.accounts:
            continue
        costs[account] = costs.get(account, Cost()) + worst_case(prepared, site.scheduler)
        counts[account] = counts.get(account, 0) + 1
    if not costs:
        return []
    accounts = sorted(costs)
    queue = account_queue(cluster, accounts[0] if len(accounts) == 1 else None)
    waiting = WaitingJobs(site.name).job_ids()
    moment = now or datetime.now(UTC)
    who = user or submitting_user(site)
    decisions = []
    for account in accounts:
        mine = [job for job in queue if job.account == account]
        budgets = read_budgets(ledger, site, account, mine, user=who, now=moment, waiting=waiting)
        what = "this job"
        if workflow is not None:
            stages = f"{counts[account]} {unit}{'' if counts[account] == 1 else 's'}"
            what = f"workflow {workflow}'s {stages} together"
        decisions.append(decide(costs[account], budgets, site.budgets.warn_at, what))
    return decisions


def submit_within_budget(
    cluster: Cluster,
    ledger: Ledger,
    spec: JobSpec,
    *,
    user: str | None = None,
    now: datetime | None = None,
) -> Submitted:
    """Submit ``spec`` if it fits its account's budget; else refuse (BudgetExceeded naming
    the numbers and the knob) or, with ``on_exhausted: hold``, submit it held and record it
    as waiting for budget."""
    from hpcbridge.policy.waiting import WaitingJobs

    decision = check(cluster, ledger, spec, user=user, now=now)
    if decision is None or decision.allowed:
        job_id = cluster.submit(spec)
        return Submitted(job_id, decision, warnings=decision.warnings if decision else ())
    if cluster.site.budgets.on_exhausted == "refuse":
        raise BudgetExceeded("; ".join(decision.refusals))
    job_id = cluster.submit(spec.model_copy(update={"hold": True}))
    budget = decision.budgets[0]
    WaitingJobs(cluster.site.name).add(
        job_id,
        account=budget.account,
        user=user or submitting_user(cluster.site),
        worst_case=(decision.cost.core_hours, decision.cost.gpu_hours),
        reason="; ".join(decision.refusals),
    )
    return Submitted(job_id, decision, held=True, warnings=decision.refusals)


@dataclass(frozen=True)
class SubmittedMany:
    """A sweep submitted through the budget check: one id per job, the decisions, whether
    it waits held for budget, and what was said."""

    job_ids: list[str]
    decisions: tuple[Decision, ...]
    held: bool = False
    warnings: tuple[str, ...] = field(default=())


def submit_many_within_budget(
    cluster: Cluster,
    ledger: Ledger,
    specs: Sequence[JobSpec],
    *,
    name: str,
    limit: int | None = None,
    max_array_size: int | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> SubmittedMany:
    """Submit a sweep (Cluster.submit_many) if all of it fits its accounts' budgets, summed as
    a workflow's stages are: refused whole (BudgetExceeded), or with ``on_exhausted: hold``
    submitted held and recorded as one wait, its arrays released together once it fits."""
    from hpcbridge.policy.waiting import WaitingJobs

    decisions = tuple(
        check_jobs(cluster, ledger, specs, workflow=name, unit="job", user=user, now=now)
    )
    refused = [decision for decision in decisions if not decision.allowed]
    said = tuple(text for d in decisions for text in (d.refusals or d.warnings))
    if refused and cluster.site.budgets.on_exhausted == "refuse":
        raise BudgetExceeded("; ".join(text for d in refused for text in d.refusals))
    if not refused:
        job_ids = cluster.submit_many(specs, limit=limit, max_array_size=max_array_size)
        return SubmittedMany(job_ids, decisions, warnings=said)
    held = [spec.model_copy(update={"hold": True}) for spec in specs]
    job_ids = cluster.submit_many(held, limit=limit, max_array_size=max_array_size)
    decision = refused[0]
    account = decision.budgets[0].account
    site = cluster.site
    covers = [
        job_id
        for spec, job_id in zip(specs, job_ids, strict=True)
        if site.prepare(spec).account == account
    ]
    submissions = list(dict.fromkeys(cluster.submitted_in[job_id] for job_id in covers))
    # Kept under its first job's id, which the queue lists while it is held (an array's own
    # id is not a row of squeue --array); released by its submissions' ids, arrays whole.
    WaitingJobs(site.name).add(
        covers[0],
        account=account,
        user=user or submitting_user(site),
        worst_case=(decision.cost.core_hours, decision.cost.gpu_hours),
        reason="; ".join(decision.refusals),
        release=submissions,
        covers=[*submissions, *covers],
    )
    return SubmittedMany(job_ids, decisions, held=True, warnings=said)


def submitting_user(site: SiteConfig) -> str:
    """Who the scheduler will see submit: the SSH user if the site names one, else us."""
    transport = site.transport
    if transport.kind == "ssh" and transport.user:
        return transport.user
    return getpass.getuser()


def _period(
    ledger: Ledger, site: str, account: str, config: AccountBudget, now: datetime
) -> tuple[datetime, datetime | None, Cost | None]:
    """[starts, ends) and the limit: the allocation covering now, or the rolling month."""
    if config.period == "month":
        limit = Cost(config.core_hours or 0.0, config.gpu_hours or 0.0)
        return now - ROLLING_PERIOD, None, limit
    grant = allocation_at(ledger, account, now)
    if grant is None:
        return now, None, None
    return grant.starts, grant.ends, Cost(grant.core_hours, grant.gpu_hours)


def _usage_by_user(
    ledger: Ledger, account: str, starts: datetime, now: datetime
) -> dict[str | None, Cost]:
    """The account's usage in [starts, now) per user, from one usage report."""
    if now <= starts:
        return {}
    report = usage_report(ledger, ("user",), starts, now, account=account, now=now)
    return {row.keys[0]: Cost(row.usage.core_hours, row.usage.gpu_hours) for row in report.rows}


def _knob(site: str, account: str, user: str | None, period: str) -> str:
    if user is not None:
        return f"raise budgets.accounts.{account}.users.{user} in site {site}"
    if period == "month":
        return f"raise budgets.accounts.{account}.core_hours/gpu_hours in site {site}"
    return (
        f"raise the allocation: hpcbridge budget allocate {account} --core-hours N [--gpu-hours M]"
    )


def _amount(hours: float) -> str:
    """1,200 or 0.5: whole numbers with thousands separators, small ones to a tenth."""
    if math.isinf(hours):
        return "unlimited"
    rounded = round(hours, 1)
    return (
        f"{rounded:,.0f}" if rounded == int(rounded) or abs(rounded) >= 100 else f"{rounded:,.1f}"
    )
