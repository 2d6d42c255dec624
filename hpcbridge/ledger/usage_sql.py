"""The usage report's SQL: one scan of the attempts, whatever the number of periods.

Reports read whole months from the monthly rollup (hpcbridge.ledger.rollup) and this scan
only for the rest: the partial months at their edges, unfinished attempts, and ledgers whose
rollup is being refreshed. It is also the report's definition, which the rollup must match.

Joining the attempts to a table of months on overlap makes the database test every attempt
against every month; SQLite even put the months in the outer loop and scanned a million
attempts once per month (12 s for three years by month). Instead the query groups each
attempt by the period of its first second, which a CASE tree finds by binary search over
the period bounds, and by the period of its last second, searched only when the attempt
does not end on the day it started (months begin at midnight UTC, so one day is one period).
Per group it sums cpus, cpus x start and cpus x end (likewise GPUs); :func:`spread` then
splits the hours exactly: an attempt inside one period has cpus x (end - start) there, one
spanning periods i..j has cpus x (bound(i+1) - start) in i, whole periods in between and
cpus x (end - bound(j)) in j. Attempts that began before the report (or end after it) form
groups of their own, so their start (end) is clipped in Python, as every one of them is
clipped to the same bound. Only grouped sums leave the database.

Times are integer epoch seconds (schema.UtcTime), summed as offsets from the report's start
so that products stay far from 64-bit overflow. Constants are inlined as SQL literals (they
are integers made here) so that PostgreSQL sees one expression in SELECT and GROUP BY.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    and_,
    case,
    column,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
    values,
)

from hpcbridge.ledger.schema import Account, Allocation, Cluster, JobAttempt, User
from hpcbridge.ledger.sqlfuncs import greatest, least

_DAY = 86400


@dataclass(frozen=True)
class Periods:
    """Consecutive periods: period k is [bounds[k], bounds[k + 1]) in epoch seconds."""

    labels: tuple[str, ...]
    bounds: tuple[int, ...]

    @classmethod
    def between(cls, start: datetime, end: datetime, *, monthly: bool) -> Periods:
        """Calendar months (UTC) clipped to [start, end), or the range as one period ""."""
        first, last = epoch(start), epoch(end)
        if not monthly:
            return cls(("",), (first, last))
        labels, bounds = [], [first]
        month = start.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while epoch(month) < last:
            following = (month + timedelta(days=32)).replace(day=1)
            labels.append(f"{month:%Y-%m}")
            bounds.append(min(last, epoch(following)))
            month = following
        return cls(tuple(labels), tuple(bounds))

    def __len__(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def offsets(self) -> tuple[int, ...]:
        """The bounds as seconds from the first, as the query sums times."""
        return tuple(bound - self.bounds[0] for bound in self.bounds)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _int(value: int) -> ColumnElement[int]:
    return literal_column(str(int(value)), BigInteger)


def seconds_of(time_column: Any) -> ColumnElement[int]:
    """A UtcTime column as the integer it is stored as, so SQL arithmetic stays integer."""
    return type_coerce(time_column, BigInteger)


BUCKET_S = 2**21
"""The index on job_attempts' start times holds start_at / BUCKET_S (24 days): a batch of
attempts in any order then appends to a few dozen places of the index, not to one place per
attempt (an index on start_at itself cut the ingest rate of 1M random attempts by 60%)."""


def started_in(start_at: Any, low: int, high: int) -> ColumnElement[bool]:
    """low <= start_at < high, said so that the database reads it through the bucket index."""
    bucket = seconds_of(start_at) // _int(BUCKET_S)
    return and_(
        bucket >= _int(low // BUCKET_S),
        bucket <= _int((high - 1) // BUCKET_S),
        start_at >= low,
        start_at < high,
    )


def unindexed(cluster_id: Any) -> Any:
    """``cluster_id + 0``: the same value, but no longer a column SQLite's planner would read
    through the unique index (cluster_id, job_id, ...), which, without statistics, it prefers
    to the index on start_at and then reads every attempt of the cluster."""
    return cluster_id + _int(0)


def _period_of(moment: ColumnElement[int], bounds: Sequence[int], low: int, high: int) -> Any:
    """The k in [low, high) whose period holds ``moment``: a binary search as nested CASEs."""
    if high - low == 1:
        return _int(low)
    middle = (low + high) // 2
    return case(
        (moment < _int(bounds[middle]), _period_of(moment, bounds, low, middle)),
        else_=_period_of(moment, bounds, middle, high),
    )


def usage_query(
    by: Sequence[str],
    periods: Periods,
    now_s: int,
    account: str | None,
    cluster: str | None,
    *,
    finished: bool | None = None,
    started_from: int | None = None,
) -> Select[Any]:
    """Per group of ``by`` (less month) and period placement: the sums :func:`spread` needs.

    ``finished`` keeps only finished (True) or unfinished (False) attempts, and
    ``started_from`` those started at or after it: a bound that lets the database read the
    attempts of a few months through the index on start times rather than the whole table
    (hpcbridge.ledger.rollup reads the rest of a report from its monthly rollup).
    """
    attempts = JobAttempt.__table__
    first, last = periods.bounds[0], periods.bounds[-1]
    start = seconds_of(attempts.c.start_at)
    end = func.coalesce(seconds_of(attempts.c.end_at), _int(now_s))
    keys = {
        "account": attempts.c.account_id,
        "user": attempts.c.user_id,
        "partition": attempts.c.partition,
        "state": attempts.c.state,
    }
    grouped = [keys[key].label(key) for key in by if key in keys]
    grouped.append(_placement_expression(start, end, periods).label("placement"))
    offsets = start - _int(first), end - _int(first)
    query = (
        select(
            *grouped,
            *_weighted(attempts.c.alloc_cpus, "cpu", *offsets),
            *_weighted(attempts.c.alloc_gpus, "gpu", *offsets),
            *per_attempt_sums(),
        )
        # An attempt overlaps the report when [start, end) meets it, or when it starts inside
        # it (zero-length attempts); one ending exactly at the start does not. end >= start
        # leaves out corrupt rows, which would count negative hours.
        .where(start < _int(last), or_(end > _int(first), start >= _int(first)), end >= start)
        .group_by(*(column.element for column in grouped))
    )
    if finished is not None:
        ended = attempts.c.end_at
        query = query.where(ended.is_not(None) if finished else ended.is_(None))
    if started_from is not None:
        query = query.where(started_in(attempts.c.start_at, started_from, last))
    if cluster is not None:
        query = query.where(
            unindexed(attempts.c.cluster_id)
            == select(Cluster.id).where(Cluster.name == cluster).scalar_subquery()
        )
    if account is not None:
        query = query.where(attempts.c.account_id == _account_id(account))
    return with_names(query.subquery(), by)


def per_attempt_sums(started: ColumnElement[bool] | None = None) -> list[Any]:
    """The sums of :data:`PER_ATTEMPT` over the attempts of a group, or over those of them
    for which ``started`` holds (the rollup's: those that started in the month)."""
    attempts = JobAttempt.__table__
    start = seconds_of(attempts.c.start_at)
    measured = and_(
        attempts.c.cpu_time_s.is_not(None),
        attempts.c.end_at.is_not(None),
        attempts.c.alloc_cpus > 0,
    )
    if started is not None:
        measured = and_(started, measured)
    return [
        (func.count() if started is None else func.sum(case((started, 1), else_=0))).label("jobs"),
        func.sum(_when(started, start - seconds_of(attempts.c.submit_at))).label("wait_s"),
        func.count(_when(started, attempts.c.submit_at)).label("waited"),
        func.sum(case((measured, attempts.c.cpu_time_s))).label("cpu_used"),
        func.sum(
            case((measured, attempts.c.alloc_cpus * (seconds_of(attempts.c.end_at) - start)))
        ).label("cpu_available"),
    ]


def _when(condition: ColumnElement[bool] | None, value: Any) -> Any:
    return value if condition is None else case((condition, value))


def _placement_expression(start: Any, end: Any, periods: Periods) -> Any:
    """Where an attempt lies, packed in one integer (one sort key is cheaper than four):
    ((edge x n) + first period) x (n + 1) + last code, for n periods, where edge is 2 if it
    started before the report plus 1 if it ends after it, and the last code is 0 when it
    ends on the day it started, else its last period + 1. :func:`placement` unpacks it."""
    count = len(periods)
    edge = case((start < _int(periods.bounds[0]), 2), else_=0) + case(
        (end > _int(periods.bounds[-1]), 1), else_=0
    )
    packed = edge * _int(count * (count + 1))
    if count == 1:
        return packed
    same_day = start // _int(_DAY) == (end - 1) // _int(_DAY)
    last_code = case((same_day, 0), else_=_period_of(end - 1, periods.bounds, 0, count) + 1)
    return packed + _period_of(start, periods.bounds, 0, count) * _int(count + 1) + last_code


@dataclass(frozen=True, slots=True)
class Placement:
    """An unpacked placement: the periods an attempt spans, and whether it was clipped."""

    first: int
    last: int
    starts_before: bool
    ends_after: bool


def placement(packed: int, periods: Periods) -> Placement:
    """The inverse of :func:`_placement_expression`."""
    count = len(periods)
    rest, last_code = divmod(packed, count + 1)
    edge, first = divmod(rest, count)
    # A zero-length attempt on a boundary "ends" (end - 1) in the period before it starts.
    last = first if last_code == 0 else max(first, last_code - 1)
    return Placement(first, last, starts_before=edge >= 2, ends_after=edge % 2 == 1)


def _weighted(count: Any, name: str, start: Any, end: Any) -> list[Any]:
    """sum(count), sum(count x start), sum(count x end): what spreading hours needs."""
    return [
        func.sum(count).label(f"{name}s"),
        func.sum(count * start).label(f"{name}_start"),
        func.sum(count * end).label(f"{name}_end"),
    ]


def with_names(grouped: Any, by: Sequence[str]) -> Select[Any]:
    """Grouped rows (a subquery whose "account" and "user" are ids) with the ids turned into
    names; the account's id is kept, as ``account_id``, for matching allocations."""
    columns: list[Any] = [c for c in grouped.c if c.name not in ("account", "user")]
    source = grouped
    if "account" in by:
        source = source.outerjoin(Account, Account.id == grouped.c.account)
        columns += [Account.name.label("account"), grouped.c.account.label("account_id")]
    if "user" in by:
        source = source.outerjoin(User, User.id == grouped.c.user)
        columns.append(User.name.label("user"))
    return select(*columns).select_from(source)


def _account_id(account: str) -> Any:
    return select(Account.id).where(Account.name == account).scalar_subquery()


def grant_query(periods: Periods, account: str | None) -> Select[Any]:
    """Per (period label, account id): grants' core- and GPU-hours pro rata to the overlap.

    Allocations are few, so joining them to the periods (a VALUES CTE) on overlap is cheap.
    """
    grants = Allocation.__table__
    table = (
        values(
            column("label", String),
            column("first_s", BigInteger),
            column("end_s", BigInteger),
            name="periods",
        )
        .data(list(zip(periods.labels, periods.bounds, periods.bounds[1:], strict=False)))
        .cte("periods")
    )
    period = table.c
    starts, ends = seconds_of(grants.c.starts), seconds_of(grants.c.ends)
    share = least(ends, period.end_s) - greatest(starts, period.first_s)
    query = (
        select(
            period.label.label("label"),
            grants.c.account_id.label("account_id"),
            func.sum(grants.c.core_hours * share / (ends - starts)).label("core_hours"),
            func.sum(grants.c.gpu_hours * share / (ends - starts)).label("gpu_hours"),
        )
        .join_from(grants, table, and_(starts < period.end_s, ends > period.first_s))
        .group_by(period.label, grants.c.account_id)
    )
    if account is not None:
        query = query.where(grants.c.account_id == _account_id(account))
    return query


class Share(NamedTuple):
    """What one grouped row adds to one period; ``started_here`` marks where its attempts
    started inside the report (where their jobs, waits and CPU efficiency count)."""

    period: int
    cpu_seconds: int
    gpu_seconds: int
    started_here: bool


class Spread(NamedTuple):
    """A grouped row split over periods: its first and last period's shares, and the whole
    periods in between that its ``cpus`` and ``gpus`` run through."""

    shares: list[Share]
    through: range
    cpus: int
    gpus: int


def spread(raw: Any, periods: Periods) -> Spread:
    """Split one grouped row's sums over the periods it spans (see the module docstring)."""
    offsets = periods.offsets
    where = placement(int(raw["placement"]), periods)
    # Whole numbers (PostgreSQL sums integers as exact Decimals): the differences stay exact.
    cpus, gpus = int(raw["cpus"] or 0), int(raw["gpus"] or 0)
    cpu_start, gpu_start = int(raw["cpu_start"] or 0), int(raw["gpu_start"] or 0)
    cpu_end, gpu_end = int(raw["cpu_end"] or 0), int(raw["gpu_end"] or 0)
    if where.starts_before:  # every attempt of the group is clipped to the report's start
        cpu_start = gpu_start = 0
    if where.ends_after:  # ... or to its end
        cpu_end, gpu_end = cpus * offsets[-1], gpus * offsets[-1]
    first, last, started_here = where.first, where.last, not where.starts_before
    if first == last:
        only = Share(first, cpu_end - cpu_start, gpu_end - gpu_start, started_here)
        return Spread([only], range(0), cpus, gpus)
    head, tail = offsets[first + 1], offsets[last]
    return Spread(
        [
            Share(first, cpus * head - cpu_start, gpus * head - gpu_start, started_here),
            Share(last, cpu_end - cpus * tail, gpu_end - gpus * tail, False),
        ],
        range(first + 1, last),
        cpus,
        gpus,
    )


PER_ATTEMPT = ("jobs", "wait_s", "waited", "cpu_used", "cpu_available")
"""The sums counted where an attempt starts; after cpu and GPU seconds in :class:`PeriodSums`."""


class PeriodSums:
    """Grouped rows summed per report row (the ``by`` keys, month as its label) into plain
    lists: cpu seconds, GPU seconds, then :data:`PER_ATTEMPT`. Plain lists rather than Usage
    additions, since a report by user and month adds up ~10^5 rows. Whole periods that
    attempts run through (running jobs: every month since they started) are added per group
    at the end, from difference arrays over the periods, rather than one period at a time;
    the attempts are counted too, so a period an attempt overlaps has a row even when it
    allocated no CPU or GPU (as in the periods where it starts or ends)."""

    def __init__(self, by: Sequence[str], periods: Periods) -> None:
        self.by = tuple(by)
        self.periods = periods
        self.month = self.by.index("month") if "month" in self.by else None
        self._sums: dict[tuple[Any, ...], list[Any]] = {}
        self.account_ids: dict[tuple[Any, ...], int | None] = {}
        self._through: dict[tuple[Any, ...], tuple[list[list[int]], int | None]] = {}

    def add(self, raw: Any) -> None:
        """Add one row of :func:`usage_query` over ``periods``."""
        keys = [None if key == "month" else raw[key] for key in self.by]
        account_id = raw.get("account_id")
        per_attempt = [raw[name] or 0 for name in PER_ATTEMPT]
        shares, through, cpus, gpus = spread(raw, self.periods)
        for period, cpu_seconds, gpu_seconds, started_here in shares:
            total = self._total(keys, period, account_id)
            total[0] += cpu_seconds
            total[1] += gpu_seconds
            if started_here:
                for index, value in enumerate(per_attempt, start=2):
                    total[index] += value
        if through:
            size = len(self.periods) + 1
            diffs, _ = self._through.setdefault(
                tuple(keys), ([[0] * size for _ in range(3)], account_id)
            )
            for diff, amount in zip(diffs, (cpus, gpus, 1), strict=True):
                diff[through.start] += amount
                diff[through.stop] -= amount

    def add_total(self, keys: tuple[Any, ...], sums: Sequence[Any], account_id: Any) -> None:
        """Add sums already split (the rollup's, or another PeriodSums') to a report row."""
        self.account_ids[keys] = account_id
        total = self._sums.setdefault(keys, [0] * (2 + len(PER_ATTEMPT)))
        for index, value in enumerate(sums):
            total[index] += value or 0

    def totals(self) -> dict[tuple[Any, ...], list[Any]]:
        """Per report row, its sums; the periods run through added first (once)."""
        offsets = self.periods.offsets
        for keys, (diffs, account_id) in self._through.items():
            cpus = gpus = attempts = 0
            for period in range(len(self.periods)):
                cpus += diffs[0][period]
                gpus += diffs[1][period]
                attempts += diffs[2][period]
                if attempts:
                    total = self._total(list(keys), period, account_id)
                    total[0] += cpus * (offsets[period + 1] - offsets[period])
                    total[1] += gpus * (offsets[period + 1] - offsets[period])
        self._through.clear()
        return self._sums

    def _total(self, keys: list[Any], period: int, account_id: int | None) -> list[Any]:
        if self.month is not None:
            keys[self.month] = self.periods.labels[period]
        self.account_ids[tuple(keys)] = account_id
        return self._sums.setdefault(tuple(keys), [0] * (2 + len(PER_ATTEMPT)))
