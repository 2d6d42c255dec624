"""The monthly usage rollup (schema.UsageMonthly): kept exact at ingest, read by reports.

A report scanning every attempt cannot beat a plain GROUP BY over the table (0.7 s for a
million rows on SQLite), so, as sreport does, usage is summed per cluster, calendar month
and group when attempts are written, and reports read whole months from those sums.

Exactness rests on one invariant, true of every committed state: the rollup rows of a month
are the sums of the month's attempts, unless the month is marked dirty (schema.UsageDirty).
Each batch of attempts marks the months it touches, those of each attempt's [start, end)
and, for a row it replaces, those of the old row, in the batch's own transaction;
:func:`refresh`, at the end of each Ledger.upsert_attempts call, recomputes the dirty months
from the attempts and clears them in one transaction (a sync, writing window after window,
refreshes once at its end). Recomputing a month once per call rather than once per batch
costs ingest one grouped pass over the months written, not one per batch, and a killed sync
leaves dirty months behind, not wrong ones: reports then read from the attempts until the
next write refreshes them. Unfinished attempts are never rolled up (they grow with time);
reports add them from a live query over the few of them.

The rollup is as small as the groups are few: when nearly every attempt of a month is a
(account, user, partition, state) group of its own, as in benchmarks/bench_ledger.py's
default data, it is as large as the table and saves reports only the splitting of hours.

On PostgreSQL a refresh holds an advisory lock that batches share, so no batch can commit
between the refresh reading the attempts and clearing the dirty marks; SQLite's write lock
serializes the two anyway.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from hpcbridge.ledger.periods import Periods, PeriodSums, epoch
from hpcbridge.ledger.schema import (
    Account,
    Cluster,
    JobAttempt,
    UsageDirty,
    UsageLongest,
    UsageMonthly,
)
from hpcbridge.ledger.sqlfuncs import greatest, least
from hpcbridge.ledger.usage_sql import (
    charged_between,
    charged_seconds,
    per_attempt_sums,
    seconds_of,
    started_in,
    unindexed,
    usage_query,
    with_names,
)

_DAY = 86400
_ANALYZE_AFTER = 12  # months refreshed at once: a bulk load, after which statistics are stale
_LOCK = 0x6870_6375  # "hpcu": the advisory lock of rollup refreshes (shared by batches)
ROLLUP_SUMS = (
    "core_seconds",
    "gpu_seconds",
    "jobs",
    "wait_s",
    "waited_jobs",
    "cpu_used_s",
    "cpu_available_s",
)
"""The rollup's columns in PeriodSums order: CPU and GPU seconds, then periods.PER_ATTEMPT."""


def touched_months(spans: Iterable[tuple[int | None, int | None]]) -> set[int]:
    """The month starts (epoch seconds) that finished attempts with these (start, end)
    overlap: those of [start, end), or the month of start for a zero-length attempt.

    Called on every batch, so the common case (a few distinct days) stays cheap: attempts
    are reduced to their first and last day, and only those over 28 days long (which may
    run through a whole month) are walked month by month."""
    finished = [(start, end) for start, end in spans if end is not None and start is not None]
    days = {start // _DAY for start, end in finished if end >= start}
    days.update((end - 1) // _DAY for start, end in finished if end > start)
    months = {_month_of_day(day) for day in days}
    for start, end in finished:
        if end - start > 28 * _DAY:
            months.update(range(_month_of_day(start // _DAY), _month_of_day((end - 1) // _DAY) + 1))
    return {_month_start(month) for month in months}


@functools.cache
def _month_of_day(day: int) -> int:
    moment = datetime.fromtimestamp(day * _DAY, UTC)
    return moment.year * 12 + moment.month - 1


@functools.cache
def _month_start(month: int) -> int:
    return epoch(datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC))


def _month_number(month_start: int) -> int:
    return _month_of_day(month_start // _DAY)


def mark_dirty(connection: Connection, cluster_id: int, months: set[int]) -> None:
    """Mark months of a cluster for :func:`refresh`, in the caller's (the batch's) transaction."""
    if not months:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _LOCK})
    statement = _insert_ignoring_duplicates(connection, ("cluster_id", "month"))
    connection.execute(statement, [{"cluster_id": cluster_id, "month": m} for m in months])


def _insert_ignoring_duplicates(connection: Connection, key: Sequence[str]) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(UsageDirty).on_conflict_do_nothing(index_elements=list(key))


def refresh(connection: Connection) -> None:
    """Recompute every dirty month from the attempts and clear its mark.

    Consecutive dirty months of a cluster form one run; an attempt whose rollup rows are out
    of date marked all its months, so it lies inside one run, and every attempt that started
    before the run is rolled up already, no longer than the cluster's UsageLongest.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    dirty = connection.execute(select(UsageDirty.cluster_id, UsageDirty.month)).all()
    by_cluster: dict[int, list[int]] = {}
    for cluster_id, moment in dirty:
        by_cluster.setdefault(cluster_id, []).append(_month_number(epoch(moment)))
    for cluster_id, months in by_cluster.items():
        longest = _longest(connection, cluster_id)
        for first, last in _runs(sorted(months)):
            low, high = _month_start(first), _month_start(last + 1)
            longest = max(longest, _longest_started(connection, cluster_id, low, high))
            connection.execute(
                delete(UsageMonthly).where(
                    UsageMonthly.cluster_id == cluster_id,
                    UsageMonthly.month >= low,
                    UsageMonthly.month < high,
                )
            )
            for month in range(first, last + 1):
                connection.execute(_recompute(cluster_id, month, longest))
        _set_longest(connection, cluster_id, longest)
        read = [_month_start(month) for month in months]
        connection.execute(
            delete(UsageDirty).where(
                UsageDirty.cluster_id == cluster_id, UsageDirty.month.in_(read)
            )
        )
    if connection.dialect.name == "postgresql" and len(dirty) >= _ANALYZE_AFTER:
        # A bulk load leaves the planner without statistics until autovacuum comes: it then
        # sorted a million rollup rows on disk for a report instead of hashing them.
        connection.execute(text("ANALYZE usage_monthly"))


def rebuild(connection: Connection) -> None:
    """Roll up every finished attempt (used by the migration that creates the rollup)."""
    attempts = JobAttempt.__table__.c
    spans = connection.execute(
        select(attempts.cluster_id, func.min(attempts.start_at), func.max(attempts.end_at))
        .where(attempts.end_at.is_not(None), attempts.end_at >= attempts.start_at)
        .group_by(attempts.cluster_id)
    ).all()
    for cluster_id, first, last in spans:
        first_month = _month_number(epoch(first))
        last_month = _month_number(max(epoch(first), epoch(last) - 1))
        months = {_month_start(month) for month in range(first_month, last_month + 1)}
        mark_dirty(connection, cluster_id, months)
    refresh(connection)


def _runs(months: list[int]) -> list[tuple[int, int]]:
    """Sorted month numbers as (first, last) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for month in months:
        if runs and runs[-1][1] == month - 1:
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs


def _recompute(cluster_id: int, month: int, longest: int) -> Any:
    """INSERT ... SELECT of one month's rollup rows: every finished attempt overlapping the
    month (as usage_sql.usage_query's rule), its charge's share in the month (the same
    usage_sql.charged_between), its per-attempt sums where it started in the month. Per
    month rather than one query for all: each reads its own attempts through the index on
    start times, and needs no table of months."""
    low, high = _month_start(month), _month_start(month + 1)
    attempts = JobAttempt.__table__.c
    start, end = seconds_of(attempts.start_at), seconds_of(attempts.end_at)
    clipped = charged_between(
        charged_seconds(start, end),
        start,
        end,
        greatest(start, literal(low)),
        least(end, literal(high)),
    )
    keys = (attempts.account_id, attempts.user_id, attempts.partition, attempts.state)
    query = (
        select(
            literal(cluster_id),
            literal(low),
            *keys,
            func.coalesce(func.sum(attempts.alloc_cpus * clipped), 0),
            func.coalesce(func.sum(attempts.alloc_gpus * clipped), 0),
            *(func.coalesce(sums, 0) for sums in per_attempt_sums(start >= low)),
        )
        .where(
            unindexed(attempts.cluster_id) == cluster_id,
            attempts.end_at.is_not(None),
            started_in(attempts.start_at, low - longest, high),
            or_(end > low, start >= low),
            end >= start,
        )
        .group_by(*keys)
    )
    columns = ("cluster_id", "month", "account_id", "user_id", "partition", "state")
    return insert(UsageMonthly).from_select([*columns, *ROLLUP_SUMS], query)


def _longest(connection: Connection, cluster_id: int | None) -> int:
    query = select(func.max(UsageLongest.longest_s))
    if cluster_id is not None:
        query = query.where(UsageLongest.cluster_id == cluster_id)
    return int(connection.scalar(query) or 0)


def _longest_started(connection: Connection, cluster_id: int, low: int, high: int) -> int:
    attempts = JobAttempt.__table__.c
    longest = connection.scalar(
        select(func.max(seconds_of(attempts.end_at) - seconds_of(attempts.start_at))).where(
            attempts.cluster_id == cluster_id,
            attempts.end_at.is_not(None),
            started_in(attempts.start_at, low, high),
        )
    )
    return int(longest or 0)


def _set_longest(connection: Connection, cluster_id: int, longest: int) -> None:
    connection.execute(delete(UsageLongest).where(UsageLongest.cluster_id == cluster_id))
    connection.execute(insert(UsageLongest).values(cluster_id=cluster_id, longest_s=longest))


def usage_sums(
    connection: Connection,
    by: Sequence[str],
    periods: Periods,
    now_s: int,
    *,
    account: str | None,
    cluster: str | None,
) -> PeriodSums:
    """A report's sums: whole months from the rollup; the partial months at its edges and
    unfinished attempts from usage_query, each over its own few attempts. While dirty months
    are left (a write was interrupted), the whole report comes from the attempts."""
    sums = PeriodSums(by, periods)
    first, last = periods.bounds[0], periods.bounds[-1]
    low = _month_start(_month_number(first - 1) + 1)  # the first month start >= first
    high = _month_start(_month_number(last))  # the last month start <= last
    dirty = _dirty(connection, cluster)
    parts: list[tuple[int, int, int | None]]
    if dirty:
        parts = [(first, last, None)]
    elif low < high:
        longest = _longest(connection, _cluster_id(connection, cluster))
        parts = [(first, low, first - longest), (high, last, high - longest)]
        _add_rollup(connection, sums, by, low, high, account=account, cluster=cluster)
    else:
        parts = [(first, last, first - _longest(connection, _cluster_id(connection, cluster)))]
    monthly = "month" in by
    for part_first, part_last, started_from in parts:
        if part_first >= part_last:
            continue
        part_periods = Periods.between(_moment(part_first), _moment(part_last), monthly=monthly)
        part = PeriodSums(by, part_periods)
        query = usage_query(
            by,
            part_periods,
            now_s,
            account,
            cluster,
            finished=True if started_from is not None else None,
            started_from=started_from,
        )
        for raw in connection.execute(query):
            part.add(raw._mapping)
        for keys, totals in part.totals().items():
            sums.add_total(keys, totals, part.account_ids[keys])
    if not dirty:
        for raw in connection.execute(
            usage_query(by, periods, now_s, account, cluster, finished=False)
        ):
            sums.add(raw._mapping)
    return sums


def _add_rollup(
    connection: Connection,
    sums: PeriodSums,
    by: Sequence[str],
    low: int,
    high: int,
    *,
    account: str | None,
    cluster: str | None,
) -> None:
    """Add the rollup's rows of the months [low, high), grouped by ``by``, to ``sums``."""
    if connection.dialect.name == "postgresql":
        # The default 4 MB made PostgreSQL sort a year's rollup rows on disk rather than hash
        # them; LOCAL lasts until the report's transaction ends.
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
    table = UsageMonthly.__table__.c
    keys = {
        "account": table.account_id,
        "user": table.user_id,
        "partition": table.partition,
        "state": table.state,
        "month": table.month,
    }
    grouped = [keys[key].label(key) for key in by]
    query = (
        select(*grouped, *(func.sum(table[name]).label(name) for name in ROLLUP_SUMS))
        .where(table.month >= low, table.month < high)
        .group_by(*(column.element for column in grouped))
    )
    if cluster is not None:
        query = query.where(table.cluster_id == _cluster_subquery(cluster))
    if account is not None:
        query = query.where(
            table.account_id == select(Account.id).where(Account.name == account).scalar_subquery()
        )
    result = connection.execute(with_names(query.subquery(), by))
    # By position, and month labels formatted once each: a report by user and month reads
    # tens of thousands of rows here.
    names = list(result.keys())
    key_at = [names.index(key) for key in by]
    sum_at = [names.index(name) for name in ROLLUP_SUMS]
    used_at = names.index("cpu_used_s")  # the one float; PostgreSQL sums the rest as Decimal
    account_at = names.index("account_id") if "account_id" in names else None
    month = by.index("month") if "month" in by else None
    labels: dict[datetime, str] = {}
    for row in result:
        row_keys = [row[i] for i in key_at]
        if month is not None:
            moment = row_keys[month]
            row_keys[month] = labels.get(moment) or labels.setdefault(moment, f"{moment:%Y-%m}")
        values = [float(row[i] or 0) if i == used_at else int(row[i] or 0) for i in sum_at]
        account_id = None if account_at is None else row[account_at]
        sums.add_total(tuple(row_keys), values, account_id)


def _dirty(connection: Connection, cluster: str | None) -> bool:
    query = select(UsageDirty.cluster_id).limit(1)
    if cluster is not None:
        query = query.where(UsageDirty.cluster_id == _cluster_subquery(cluster))
    return connection.scalar(query) is not None


def _cluster_id(connection: Connection, cluster: str | None) -> int | None:
    """The id of a named cluster (-1 when unknown: no rows), None for every cluster."""
    if cluster is None:
        return None
    found = connection.scalar(select(Cluster.id).where(Cluster.name == cluster))
    return -1 if found is None else int(found)


def _cluster_subquery(cluster: str) -> Any:
    return select(Cluster.id).where(Cluster.name == cluster).scalar_subquery()


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
