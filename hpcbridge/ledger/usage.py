"""Usage reports: core-hours, GPU-hours, jobs, waits and CPU efficiency, grouped as asked.

An attempt is charged what its scheduler charged: alloc_cpus (alloc_gpus) x its charged
seconds, PBS's resources_used.walltime, Slurm's ElapsedRaw, an SWF trace's run time
(elapsed_s). A source that gives none (and an attempt still running, counted up to ``now``)
is charged end - start. Array parents are not attempts, so their subjobs are charged once.
Start and end place the charge in time, split pro rata as sreport does: within a period
[a, b) an attempt is charged its charged seconds x (seconds of [start, end) inside [a, b)) /
(end - start), rounded so the periods add up to the whole charge. A job running across the
end of a month is charged to both months, and a report over [from, to) counts only the part
of each job inside it. Months are calendar months in UTC.

The database does the work (a ledger holds millions of attempts): whole months come from
the monthly rollup (:mod:`hpcbridge.ledger.rollup`), the rest from grouped scans of the few
attempts left (:mod:`hpcbridge.ledger.usage_sql`); Python only splits the grouped sums
between months and sets them against allocations.

Per group, ``jobs`` counts the attempts that *started* in the period (a requeued job counts
once per run), and the mean wait and CPU efficiency are taken over those same attempts, so
a job crossing a month boundary adds hours to both months but is counted once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hpcbridge.ledger.periods import Periods, epoch
from hpcbridge.ledger.rollup import usage_sums
from hpcbridge.ledger.schema import Account, Allocation
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage_sql import grant_query

GROUP_KEYS = ("account", "user", "month", "partition", "state")
"""What ``--by`` may name, in any combination and order."""

_HOUR = 3600.0


def parse_group_by(text: str) -> tuple[str, ...]:
    """``"account,month"`` as a tuple of keys; ValueError names a key that is not one."""
    keys = tuple(part.strip() for part in text.split(","))
    for key in keys:
        if key not in GROUP_KEYS:
            raise ValueError(f"cannot group by {key!r}; choose from {', '.join(GROUP_KEYS)}")
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"{', '.join(map(repr, repeated))} given more than once")
    return keys


@dataclass(frozen=True, slots=True)
class Usage:
    """What a group of attempts used in a period; sums, so groups add up to totals."""

    core_hours: float = 0.0
    gpu_hours: float = 0.0
    jobs: int = 0
    wait_s: float = 0.0
    waited_jobs: int = 0
    cpu_used_s: float = 0.0
    cpu_available_s: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def mean_wait_s(self) -> float | None:
        """Mean of start - submit over the attempts that started here and have a submit time."""
        return self.wait_s / self.waited_jobs if self.waited_jobs else None

    @property
    def cpu_efficiency_pct(self) -> float | None:
        """CPU time / (allocated CPUs x elapsed), over finished attempts that report CPU time."""
        return 100 * self.cpu_used_s / self.cpu_available_s if self.cpu_available_s else None


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's grants in a period against what it used there, both split pro rata.

    A grant of 12,000 core-hours for a year counts 1,000 in a 30-day month (by the second),
    so monthly rows show usage against an even share and add up to the whole grant; run the
    report over the allocation period to read what is left of it.
    """

    granted_core_hours: float = 0.0
    granted_gpu_hours: float = 0.0
    used_core_hours: float = 0.0
    used_gpu_hours: float = 0.0

    def __add__(self, other: Balance) -> Balance:
        return Balance(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def remaining_core_hours(self) -> float:
        return self.granted_core_hours - self.used_core_hours

    @property
    def remaining_gpu_hours(self) -> float:
        return self.granted_gpu_hours - self.used_gpu_hours

    @property
    def core_used_pct(self) -> float | None:
        return _percent(self.used_core_hours, self.granted_core_hours)

    @property
    def gpu_used_pct(self) -> float | None:
        return _percent(self.used_gpu_hours, self.granted_gpu_hours)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group: its key values in ``--by`` order (None where the ledger has none).

    ``balance`` is the group's *account* in the group's period, so the rows of one account
    split by user or partition each show the account's whole balance.
    """

    keys: tuple[str | None, ...]
    usage: Usage
    balance: Balance | None = None


@dataclass(frozen=True)
class UsageReport:
    """A usage report over [start, end), ready to render."""

    by: tuple[str, ...]
    start: datetime
    end: datetime
    cluster: str | None = None
    account: str | None = None
    rows: list[UsageRow] = field(default_factory=list)
    total: Usage = field(default_factory=Usage)
    total_balance: Balance | None = None

    @property
    def with_allocations(self) -> bool:
        """Allocations are compared only when rows are per account."""
        return "account" in self.by


def usage_report(
    ledger: Ledger,
    by: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    account: str | None = None,
    cluster: str | None = None,
    now: datetime | None = None,
) -> UsageReport:
    """Usage over [start, end) grouped by ``by`` (names from GROUP_KEYS), optionally of one
    account and one cluster. ``now`` (default: the clock) is where running attempts end."""
    by = parse_group_by(",".join(by))
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("report bounds must be timezone-aware datetimes")
    if end <= start:
        raise ValueError(
            f"the report ends ({end:%Y-%m-%d %H:%M:%S}) before it starts "
            f"({start:%Y-%m-%d %H:%M:%S})"
        )
    periods = Periods.between(start, end, monthly="month" in by)
    now_s = epoch(now or datetime.now(UTC))
    with ledger.transaction(read_only=True) as connection:
        sums = usage_sums(connection, by, periods, now_s, account=account, cluster=cluster)
        grants = (
            {(g.label, g.account_id): g for g in connection.execute(grant_query(periods, account))}
            if "account" in by
            else {}
        )
    totals = sums.totals()
    rows = [UsageRow(keys, _usage(total)) for keys, total in totals.items()]
    total_balance = None
    if "account" in by:
        rows, total_balance = _with_balances(by, rows, sums.account_ids, grants)
    rows.sort(key=lambda row: tuple((key is None, key or "") for key in row.keys))
    return UsageReport(
        by=by,
        start=start,
        end=end,
        cluster=cluster,
        account=account,
        rows=rows,
        # From the summed seconds rather than by adding ~10^5 Usage objects.
        total=_usage([sum(column) for column in zip(*totals.values(), strict=True)])
        if totals
        else Usage(),
        total_balance=total_balance,
    )


def _usage(total: list[Any]) -> Usage:
    """Usage from summed seconds and the per-attempt sums of PER_ATTEMPT, in that order."""
    cpu_s, gpu_s, jobs, wait_s, waited, cpu_used, cpu_available = total
    return Usage(
        core_hours=cpu_s / _HOUR,
        gpu_hours=gpu_s / _HOUR,
        jobs=int(jobs),
        wait_s=float(wait_s),
        waited_jobs=int(waited),
        cpu_used_s=float(cpu_used),
        cpu_available_s=float(cpu_available),
    )


def _with_balances(
    by: tuple[str, ...],
    rows: list[UsageRow],
    account_ids: dict[tuple[Any, ...], int | None],
    grants: dict[tuple[str, int | None], Any],
) -> tuple[list[UsageRow], Balance | None]:
    """Attach each account's balance in each period to its rows (None without a grant
    there); the total sums the balances."""
    month = by.index("month") if "month" in by else None

    def key(row: UsageRow) -> tuple[str, int | None]:
        return ("" if month is None else str(row.keys[month]), account_ids[row.keys])

    used: dict[tuple[str, int | None], Usage] = defaultdict(Usage)
    for row in rows:
        used[key(row)] += row.usage
    balances = {
        period_account: Balance(
            granted_core_hours=float(grant.core_hours),
            granted_gpu_hours=float(grant.gpu_hours),
            used_core_hours=used[period_account].core_hours,
            used_gpu_hours=used[period_account].gpu_hours,
        )
        for period_account, grant in grants.items()
        if period_account in used
    }
    with_balance = [UsageRow(row.keys, row.usage, balances.get(key(row))) for row in rows]
    return with_balance, sum(balances.values(), Balance()) if balances else None


def _percent(part: float, whole: float) -> float | None:
    return 100 * part / whole if whole else None


@dataclass(frozen=True)
class Grant:
    """An allocation: core-hours and GPU-hours granted to an account for [starts, ends)."""

    starts: datetime
    ends: datetime
    core_hours: float
    gpu_hours: float


def allocation_at(ledger: Ledger, account: str, moment: datetime) -> Grant | None:
    """The latest-starting allocation of ``account`` whose period holds ``moment``."""
    query = (
        select(Allocation.starts, Allocation.ends, Allocation.core_hours, Allocation.gpu_hours)
        .join(Account, Account.id == Allocation.account_id)
        .where(Account.name == account, Allocation.starts <= moment, Allocation.ends > moment)
        .order_by(Allocation.starts.desc())
        .limit(1)
    )
    with ledger.transaction(read_only=True) as connection:
        found = connection.execute(query).first()
    if found is None:
        return None
    return Grant(found.starts, found.ends, float(found.core_hours), float(found.gpu_hours))
