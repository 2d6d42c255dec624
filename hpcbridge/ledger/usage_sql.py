"""The usage report's SQL: one scan of the attempts, whatever the number of periods.

Reports read whole months from the monthly rollup (hpcbridge.ledger.rollup) and this scan
only for the rest: the partial months at their edges, unfinished attempts, and ledgers whose
rollup is being refreshed. It is also the report's definition, which the rollup must match.

What an attempt is charged is the scheduler's own charge: cpus (GPUs) x :func:`charged_seconds`,
the run time the scheduler bills (PBS resources_used.walltime, Slurm ElapsedRaw, SWF run
time), which differs from end - start by a second or two on PBS and by the suspended time on
Slurm. Start and end only place that charge in time: :func:`charged_between` gives a period
the share of it proportional to the seconds of [start, end) inside the period, rounded so
that the shares of consecutive periods always add up to the whole charge.

Joining the attempts to a table of months on overlap makes the database test every attempt
against every month; SQLite even put the months in the outer loop and scanned a million
attempts once per month (12 s for three years by month). Instead the query groups each
attempt by the period of its first second, which a CASE tree finds by binary search over
the period bounds, and by the period of its last second, searched only when the attempt
does not end on the day it started (months begin at midnight UTC, so one day is one period).
Per group it sums cpus, and cpus x the attempt's charge in its first period and in its last
(likewise GPUs), each clipped to the report; :func:`spread` (hpcbridge.ledger.periods) adds
whole periods in between at cpus x their length. That is exact for the attempts that run
through a whole period, which are over 28 days long, when their charge is their length (as
for every running attempt); the rare ones whose charge differs are grouped by their own
start, end and charge, and split period by period in Python. Only grouped sums leave the
database.

Times are integer epoch seconds (schema.UtcTime). Constants are inlined as SQL literals (they
are integers made here) so that PostgreSQL sees one expression in SELECT and GROUP BY.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    and_,
    case,
    cast,
    column,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    type_coerce,
    union_all,
    values,
)

from hpcbridge.ledger.periods import Periods
from hpcbridge.ledger.schema import Account, Allocation, Cluster, JobAttempt, User
from hpcbridge.ledger.sqlfuncs import greatest, least

_DAY = 86400
RUNS_THROUGH_S = 28 * _DAY
"""An attempt no longer than this (the shortest month) runs through no whole month."""


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


def charged_seconds(start: Any, end: Any) -> ColumnElement[int]:
    """The seconds an attempt is charged: the scheduler's charged duration (elapsed_s) once
    it has finished. Without one (a source that does not say), and while the attempt runs
    (its elapsed_s is as old as the last sync), end - start, ``end`` being now for a running
    attempt."""
    attempts = JobAttempt.__table__.c
    length = end - start
    return case(
        (attempts.end_at.is_(None), length), else_=func.coalesce(attempts.elapsed_s, length)
    )


def charged_between(charged: Any, start: Any, end: Any, low: Any, high: Any) -> Any:
    """The part of ``charged`` seconds that falls in [low, high), a part of [start, end).

    charged x (t - start) // (end - start) is the charge up to t, so the parts of adjacent
    ranges add up to the whole charge exactly, each within a second of its proportional
    share. When the charge is the length, the part is simply high - low (no multiplication,
    which could overflow 64 bits for absurdly long runs); a zero-length attempt is charged
    whole in the one period that holds it.
    """
    length = end - start
    return case(
        (charged == length, high - low),
        (length == 0, charged),
        else_=charged * (high - start) // length - charged * (low - start) // length,
    )


def _period_of(
    moment: ColumnElement[int],
    bounds: Sequence[int],
    low: int,
    high: int,
    leaf: Callable[[int], int] = int,
) -> Any:
    """``leaf(k)`` for the k in [low, high) whose period holds ``moment`` (k itself by
    default; a bound of the period is the other use): a binary search as nested CASEs."""
    if high - low == 1:
        return _int(leaf(low))
    middle = (low + high) // 2
    return case(
        (moment < _int(bounds[middle]), _period_of(moment, bounds, low, middle, leaf)),
        else_=_period_of(moment, bounds, middle, high, leaf),
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
    """Per group of ``by`` (less month) and period placement: the sums periods.spread needs.

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
    charged = charged_seconds(start, end)
    first_part, last_part = _edge_parts(start, end, charged, periods)
    query = (
        select(
            *grouped,
            *_weighted(attempts.c.alloc_cpus, "cpu", first_part, last_part),
            *_weighted(attempts.c.alloc_gpus, "gpu", first_part, last_part),
            *per_attempt_sums(),
        )
        # An attempt overlaps the report when [start, end) meets it, or when it starts inside
        # it (zero-length attempts); one ending exactly at the start does not. end >= start
        # leaves out corrupt rows, which would count negative hours.
        .where(start < _int(last), or_(end > _int(first), start >= _int(first)), end >= start)
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
    group_keys = [column.element for column in grouped]
    if len(periods) == 1 or finished is False:  # no attempt is split in Python
        return with_names(query.group_by(*group_keys).subquery(), by)
    return with_names(_apart(query, group_keys, start, end, charged).subquery(), by)


def _apart(
    query: Select[Any], group_keys: list[Any], start: Any, end: Any, charged: Any
) -> CompoundSelect[Any]:
    """``query`` grouped, with the finished attempts that may run through whole periods and
    are charged other than their length grouped apart by their own start, end and charge,
    which periods.spread reads to split them in Python; NULL in those columns elsewhere.

    Two grouped SELECTs (UNION ALL) rather than the three as extra keys of one GROUP BY:
    SQLite sorts every attempt by its group keys, and three more keys, NULL for nearly all,
    took a third of the CPU time of a scan of 500,000 attempts (2.3 s against 1.5 s). The
    second SELECT reads the same attempts again, but sorts only the rare ones it keeps.
    """
    length = end - start
    single = and_(
        JobAttempt.__table__.c.end_at.is_not(None),
        length > _int(RUNS_THROUGH_S),
        charged != length,
    )
    values = {"single_start": start, "single_end": end, "single_charged": charged}
    rest = query.add_columns(*(cast(null(), BigInteger).label(name) for name in values)).where(
        not_(single)
    )
    kept = query.add_columns(*(value.label(name) for name, value in values.items()))
    return union_all(
        rest.group_by(*group_keys),
        kept.where(single).group_by(*group_keys, *values.values()),
    )


def per_attempt_sums(started: ColumnElement[bool] | None = None) -> list[Any]:
    """The sums of periods.PER_ATTEMPT over the attempts of a group, or over those of them
    for which ``started`` holds (the rollup's: those that started in the month). The CPU
    time available is cpus x the charged seconds, as the charge itself."""
    attempts = JobAttempt.__table__
    start = seconds_of(attempts.c.start_at)
    end = seconds_of(attempts.c.end_at)
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
        func.sum(case((measured, attempts.c.alloc_cpus * charged_seconds(start, end)))).label(
            "cpu_available"
        ),
    ]


def _when(condition: ColumnElement[bool] | None, value: Any) -> Any:
    return value if condition is None else case((condition, value))


def _placement_expression(start: Any, end: Any, periods: Periods) -> Any:
    """Where an attempt lies, packed in one integer (one sort key is cheaper than four):
    ((edge x n) + first period) x (n + 1) + last code, for n periods, where edge is 2 if it
    started before the report plus 1 if it ends after it, and the last code is 0 when it
    ends on the day it started, else its last period + 1. periods.placement unpacks it."""
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


def _edge_parts(start: Any, end: Any, charged: Any, periods: Periods) -> tuple[Any, Any]:
    """The seconds an attempt is charged in its first period and in its last, clipped to
    the report. The last is 0 for an attempt that ends on the day it started (placed in one
    period); for one that spans days inside one period it is not used."""
    bounds, count = periods.bounds, len(periods)
    low = greatest(start, _int(bounds[0]))
    if count == 1:
        return charged_between(charged, start, end, low, least(end, _int(bounds[1]))), _int(0)
    first_end = _period_of(start, bounds, 0, count, lambda k: bounds[k + 1])
    last_start = _period_of(end - 1, bounds, 0, count, lambda k: bounds[k])
    first = charged_between(charged, start, end, low, least(end, first_end))
    last = charged_between(charged, start, end, last_start, least(end, _int(bounds[-1])))
    same_day = start // _int(_DAY) == (end - 1) // _int(_DAY)
    return first, case((same_day, 0), else_=last)


def _weighted(count: Any, name: str, first: Any, last: Any) -> list[Any]:
    """sum(count), sum(count x first part), sum(count x last part): what spreading needs."""
    return [
        func.sum(count).label(f"{name}s"),
        func.sum(count * first).label(f"{name}_first"),
        func.sum(count * last).label(f"{name}_last"),
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
