"""The usage report's SQL: one scan of the attempts, whatever the number of periods.

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


def _seconds(time_column: Any) -> ColumnElement[int]:
    """A UtcTime column as the integer it is stored as, so SQL arithmetic stays integer."""
    return type_coerce(time_column, BigInteger)


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
) -> Select[Any]:
    """Per group of ``by`` (less month) and period placement: the sums :func:`spread` needs."""
    attempts = JobAttempt.__table__
    first, last = periods.bounds[0], periods.bounds[-1]
    start = _seconds(attempts.c.start_at)
    end = func.coalesce(_seconds(attempts.c.end_at), _int(now_s))
    measured = and_(
        attempts.c.cpu_time_s.is_not(None),
        attempts.c.end_at.is_not(None),
        attempts.c.alloc_cpus > 0,
    )
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
            func.count().label("jobs"),
            func.sum(start - _seconds(attempts.c.submit_at)).label("wait_s"),
            func.count(attempts.c.submit_at).label("waited"),
            func.sum(case((measured, attempts.c.cpu_time_s))).label("cpu_used"),
            func.sum(
                case((measured, attempts.c.alloc_cpus * (_seconds(attempts.c.end_at) - start)))
            ).label("cpu_available"),
        )
        # end >= start leaves out corrupt rows, which would count negative hours.
        .where(start < _int(last), end >= _int(first), end >= start)
        .group_by(*(column.element for column in grouped))
    )
    if cluster is not None:
        query = query.where(
            attempts.c.cluster_id
            == select(Cluster.id).where(Cluster.name == cluster).scalar_subquery()
        )
    if account is not None:
        query = query.where(attempts.c.account_id == _account_id(account))
    return _named(query.subquery(), by)


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


def _named(grouped: Any, by: Sequence[str]) -> Select[Any]:
    """The grouped rows with account and user ids turned into names (ids kept for matching)."""
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
    starts, ends = _seconds(grants.c.starts), _seconds(grants.c.ends)
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
