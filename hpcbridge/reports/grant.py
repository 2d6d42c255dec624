"""The numbers of a grant report: one account's use over [from, to) for a proposal or review.

Everything is built from the usage report (:mod:`hpcbridge.ledger.usage`), so a grant
report and ``hpcbridge report usage`` always agree: hours split pro rata at month and range
bounds, jobs counted where they started. One scan by (month, user) gives both the monthly
and the per-user tables, which are its sums. The burn-down reads the allocation covering
``as_of`` (the report's end, or now if that is earlier: nothing later has happened) and the
forecast of :mod:`hpcbridge.forecast.usage`; without enough history for a forecast the
report still shows what was used and says why the forecast is missing. Running jobs count
up to ``as_of`` (their elapsed time too), so a report of a past period reads the same
whenever it is run again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from hpcbridge.errors import ConfigError, ForecastError
from hpcbridge.ledger.periods import Periods, epoch
from hpcbridge.ledger.schema import Account, Allocation, Cluster, JobAttempt, User
from hpcbridge.ledger.sqlfuncs import greatest, least
from hpcbridge.ledger.usage import Balance, Usage, usage_report
from hpcbridge.ledger.usage_sql import charged_between, charged_seconds, seconds_of

if TYPE_CHECKING:
    from hpcbridge.forecast.usage import BurnDown
    from hpcbridge.ledger.store import Ledger

TOP_JOBS = 10
"""Jobs listed by default in the top-jobs table."""

_HOUR = 3600.0
_KNOWN_SHOWN = 5


@dataclass(frozen=True)
class AllocationUse:
    """One allocation overlapping the report, against what was used in it up to ``as_of``.

    Unlike the report's monthly figures this is the whole grant and the whole use within
    [starts, min(ends, as_of)), whatever the report's own range: what is left of it. Grants
    belong to accounts, not clusters, so the use is counted on every cluster.
    """

    starts: datetime
    ends: datetime
    balance: Balance


@dataclass(frozen=True)
class TopJob:
    """One attempt among the account's largest in the report's range (hours clipped to it)."""

    job_id: str
    array_index: int
    attempt: int
    user: str | None
    name: str | None
    state: str
    start: datetime | None
    elapsed_s: int | None
    core_hours: float
    gpu_hours: float


@dataclass(frozen=True)
class BurnHistory:
    """Cumulative core-hours used within the allocation covering ``as_of``, at the allocation
    start, every month start after it and ``as_of``; with the forecast's view of the rest.

    ``burndown`` is None when the forecast could not be made; ``forecast_problem`` says why.
    """

    allocation: AllocationUse
    points: tuple[tuple[datetime, float], ...]
    burndown: BurnDown | None
    forecast_problem: str | None = None


@dataclass(frozen=True)
class GrantReport:
    """A grant report of one account over [start, end), ready to render."""

    account: str
    start: datetime
    end: datetime
    as_of: datetime
    cluster: str | None
    months: tuple[tuple[str, Usage], ...]
    users: tuple[tuple[str | None, Usage], ...]
    by_month_user: dict[tuple[str, str | None], Usage]
    total: Usage
    allocations: tuple[AllocationUse, ...]
    burn: BurnHistory | None
    top_jobs: tuple[TopJob, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """Nothing ran for the account in the range (a valid report, which says so)."""
        return not self.total.jobs and not self.total.core_hours and not self.total.gpu_hours


def grant_report(
    ledger: Ledger,
    account: str,
    start: datetime,
    end: datetime,
    *,
    cluster: str | None = None,
    top: int = TOP_JOBS,
    now: datetime | None = None,
) -> GrantReport:
    """The grant report of ``account`` over [start, end), as of the end or ``now`` (default:
    the clock), whichever is earlier; ValueError names an account the ledger does not know
    (with a few it does) or bounds out of order."""
    now = now or datetime.now(UTC)
    check_account(ledger, account)
    by_month_user = usage_report(
        ledger, ["month", "user"], start, end, account=account, cluster=cluster, now=now
    )
    cells = {(str(row.keys[0]), row.keys[1]): row.usage for row in by_month_user.rows}
    months: dict[str, Usage] = {
        label: Usage() for label in Periods.between(start, end, monthly=True).labels
    }
    users: dict[str | None, Usage] = defaultdict(Usage)
    for (month, user), used in cells.items():
        months[month] += used
        users[user] += used
    as_of = min(end, now)
    allocations = _allocations(ledger, account, start, end, as_of=as_of, now=now)
    return GrantReport(
        account=account,
        start=start,
        end=end,
        as_of=as_of,
        cluster=cluster,
        months=tuple(months.items()),
        users=tuple(sorted(users.items(), key=lambda item: -item[1].core_hours)),
        by_month_user=cells,
        total=by_month_user.total,
        allocations=allocations,
        burn=_burn(ledger, account, allocations, as_of, now),
        top_jobs=top_jobs(ledger, account, start, end, top, cluster=cluster, now=as_of),
    )


def check_account(ledger: Ledger, account: str) -> None:
    """ValueError unless the ledger has jobs or a grant of ``account``; it lists a few it has."""
    with ledger.transaction(read_only=True) as connection:
        if connection.scalar(select(Account.id).where(Account.name == account)) is not None:
            return
        count = connection.scalar(select(func.count()).select_from(Account)) or 0
        known = list(
            connection.scalars(select(Account.name).order_by(Account.name).limit(_KNOWN_SHOWN))
        )
    if not known:
        raise ValueError(f"account {account!r} is not in the ledger, which has no accounts yet")
    more = f" and {count - len(known)} more" if count > len(known) else ""
    raise ValueError(f"account {account!r} is not in the ledger; it has {', '.join(known)}{more}")


def _allocations(
    ledger: Ledger, account: str, start: datetime, end: datetime, *, as_of: datetime, now: datetime
) -> tuple[AllocationUse, ...]:
    """The account's grants overlapping [start, end), oldest first, each against the use
    from its start to its end or ``as_of``."""
    query = (
        select(Allocation.starts, Allocation.ends, Allocation.core_hours, Allocation.gpu_hours)
        .join(Account, Account.id == Allocation.account_id)
        .where(Account.name == account, Allocation.starts < end, Allocation.ends > start)
        .order_by(Allocation.starts)
    )
    with ledger.transaction(read_only=True) as connection:
        grants = list(connection.execute(query))
    result = []
    for starts, ends, core_hours, gpu_hours in grants:
        used = Usage()
        if as_of > starts:
            used = usage_report(
                ledger, ["account"], starts, min(ends, as_of), account=account, now=now
            ).total
        balance = Balance(float(core_hours), float(gpu_hours), used.core_hours, used.gpu_hours)
        result.append(AllocationUse(starts, ends, balance))
    return tuple(result)


def _burn(
    ledger: Ledger,
    account: str,
    allocations: tuple[AllocationUse, ...],
    as_of: datetime,
    now: datetime,
) -> BurnHistory | None:
    """The burn-down of the allocation covering ``as_of``; None when no allocation does."""
    covering = [a for a in allocations if a.starts <= as_of < a.ends]
    if not covering:
        return None
    allocation = covering[-1]
    points = [(allocation.starts, 0.0)]
    if as_of > allocation.starts:
        monthly = usage_report(
            ledger, ["month"], allocation.starts, as_of, account=account, now=now
        )
        used = {str(row.keys[0]): row.usage.core_hours for row in monthly.rows}
        periods = Periods.between(allocation.starts, as_of, monthly=True)
        total = 0.0
        for label, bound in zip(periods.labels, periods.bounds[1:], strict=True):
            total += used.get(label, 0.0)
            points.append((datetime.fromtimestamp(bound, UTC), total))
    try:
        from hpcbridge.forecast.usage import budget_burndown

        burndown = budget_burndown(ledger, account, as_of=as_of)
    except (ForecastError, ConfigError) as exc:  # too little history; numpy not installed
        return BurnHistory(allocation, tuple(points), None, str(exc))
    return BurnHistory(allocation, tuple(points), burndown)


def top_jobs(
    ledger: Ledger,
    account: str,
    start: datetime,
    end: datetime,
    count: int = TOP_JOBS,
    *,
    cluster: str | None = None,
    now: datetime | None = None,
) -> tuple[TopJob, ...]:
    """The ``count`` attempts of ``account`` with the most core-hours inside [start, end)
    (running ones up to ``now``), largest first; ties by job id.

    Core-hours are the usage report's: cpus x the scheduler's charge (usage_sql's
    charged_seconds: a suspended Slurm job is not charged for its suspension, a PBS job its
    walltime), its share inside the range as usage_sql.charged_between gives it, so a job
    ranks here by what it is charged there, and ``elapsed_s`` is that charge."""
    attempts = JobAttempt.__table__
    first, last = epoch(start), epoch(end)
    begun = seconds_of(attempts.c.start_at)
    ended = func.coalesce(seconds_of(attempts.c.end_at), epoch(now or datetime.now(UTC)))
    charged = charged_seconds(begun, ended)
    inside = charged_between(charged, begun, ended, greatest(begun, first), least(ended, last))
    cpu_seconds = func.coalesce(attempts.c.alloc_cpus, 0) * inside
    query = (
        select(
            attempts.c.job_id,
            attempts.c.array_index,
            attempts.c.attempt,
            User.name.label("user"),
            attempts.c.name,
            attempts.c.state,
            attempts.c.start_at,
            charged.label("elapsed_s"),
            cpu_seconds.label("cpu_seconds"),
            (func.coalesce(attempts.c.alloc_gpus, 0) * inside).label("gpu_seconds"),
        )
        .select_from(attempts.outerjoin(User, User.id == attempts.c.user_id))
        .join(Account, Account.id == attempts.c.account_id)
        .where(Account.name == account, begun < last, ended > first, ended >= begun)
        .order_by(cpu_seconds.desc(), attempts.c.job_id, attempts.c.array_index)
        .limit(count)
    )
    if cluster is not None:
        query = query.join(Cluster, Cluster.id == attempts.c.cluster_id).where(
            Cluster.name == cluster
        )
    with ledger.transaction(read_only=True) as connection:
        return tuple(_top_job(row._mapping) for row in connection.execute(query))


def _top_job(row: Any) -> TopJob:
    return TopJob(
        job_id=row["job_id"],
        array_index=row["array_index"],
        attempt=row["attempt"],
        user=row["user"],
        name=row["name"],
        state=row["state"],
        start=row["start_at"],
        elapsed_s=None if row["elapsed_s"] is None else int(row["elapsed_s"]),
        core_hours=float(row["cpu_seconds"]) / _HOUR,
        gpu_hours=float(row["gpu_seconds"]) / _HOUR,
    )
