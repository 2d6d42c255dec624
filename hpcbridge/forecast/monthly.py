"""Monthly usage series as forecasts see them: whole UTC calendar months, as of an origin.

A forecast made at an origin may see only what had happened by then, so every series here is
built *at* an origin: each job's run is clipped there (a job still running contributes only
the part before it, a job not yet started nothing) and only calendar months that ended by the
origin are returned. Months are split pro rata, as sreport and :mod:`hpcbridge.ledger.usage`
do. Two builders feed the same model: :func:`ledger_series` asks the ledger's usage report
(one SQL scan), :func:`job_series` splits in-memory job arrays (the evaluation harness, which
moves the origin a month at a time over a whole trace).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from sqlalchemy import func, select

from hpcbridge.forecast.arrays import Floats, Ints, np
from hpcbridge.ledger.schema import Cluster, JobAttempt
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import usage_report

Level = Literal["account", "user", "machine"]
LOOKBACK_MONTHS = 24
"""History a ledger forecast reads: two years is plenty for a level model and keeps old,
irrelevant behaviour (finished projects, retired users) from weighing on the long means."""


def month_start(moment: datetime) -> datetime:
    """The first instant of the UTC calendar month holding ``moment``."""
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, count: int) -> datetime:
    """``month`` (a month start) moved by ``count`` calendar months."""
    index = month.year * 12 + month.month - 1 + count
    return month.replace(year=index // 12, month=index % 12 + 1)


def first_full_month(moment: datetime) -> datetime:
    """The first month that starts at or after ``moment``: partial months are dropped."""
    start = month_start(moment)
    return start if start == moment.astimezone(UTC) else add_months(start, 1)


@dataclass(frozen=True)
class Series:
    """Core- and GPU-hours per group (rows) and whole month (columns, oldest first)."""

    groups: tuple[str, ...]
    months: tuple[date, ...]
    core_hours: Floats
    gpu_hours: Floats

    def row(self, group: str) -> int:
        return self.groups.index(group)


def ledger_series(
    ledger: Ledger, level: Level, as_of: datetime, *, cluster: str | None = None
) -> Series:
    """Every account's (or user's, or the machine's) whole months before ``as_of``.

    The series begins at the first whole month of the ledger's records (at most
    LOOKBACK_MONTHS back) and ends with the last month that ended by ``as_of``; the usage
    report is run with ``now=as_of``, so running jobs and jobs that ended later count only
    up to ``as_of``.
    """
    end = month_start(as_of)
    earliest = _earliest_start(ledger, cluster)
    start = add_months(end, -LOOKBACK_MONTHS)
    if earliest is not None:
        start = max(start, first_full_month(earliest))
    months = []
    month = start
    while month < end:
        months.append(month)
        month = add_months(month, 1)
    labels = {f"{m:%Y-%m}": index for index, m in enumerate(months)}
    by: Sequence[str] = ("month",) if level == "machine" else (level, "month")
    rows: dict[str, tuple[list[float], list[float]]] = {}
    if months:
        report = usage_report(ledger, by, start, end, cluster=cluster, now=as_of)
        for row in report.rows:
            group = "" if level == "machine" else row.keys[0]
            if group is None:
                continue  # attempts with no account (or user) belong to no group but the machine
            core, gpu = rows.setdefault(group, ([0.0] * len(months), [0.0] * len(months)))
            column = labels[str(row.keys[-1])]
            core[column] += row.usage.core_hours
            gpu[column] += row.usage.gpu_hours
    if level == "machine":
        rows.setdefault("", ([0.0] * len(months), [0.0] * len(months)))
    groups = tuple(sorted(rows))
    shape = (len(groups), len(months))
    return Series(
        groups=groups,
        months=tuple(m.date() for m in months),
        core_hours=np.array([rows[g][0] for g in groups], dtype=float).reshape(shape),
        gpu_hours=np.array([rows[g][1] for g in groups], dtype=float).reshape(shape),
    )


def _earliest_start(ledger: Ledger, cluster: str | None) -> datetime | None:
    query = select(func.min(JobAttempt.start_at))
    if cluster is not None:
        query = query.join(Cluster, Cluster.id == JobAttempt.cluster_id).where(
            Cluster.name == cluster
        )
    with ledger.transaction(read_only=True) as connection:
        return connection.scalar(query)


def job_series(
    start_s: Floats,
    end_s: Floats,
    weight: Floats,
    group: Ints,
    *,
    groups: int,
    bounds: Floats,
    origin: float,
) -> Floats:
    """Hours per (group, month) of jobs as known at ``origin`` (epoch seconds).

    ``bounds`` are the months' edges in epoch seconds (n + 1 of them for n months); a job
    counts ``weight`` x its seconds inside each month / 3600, its end clipped at ``origin``,
    so months after the origin stay empty and the month holding it is partial. ``group``
    is each job's row (0 .. groups - 1).
    """
    months = len(bounds) - 1
    # Clip every run to the origin and to the series' span; what is left is what counts.
    start = np.maximum(start_s, bounds[0])
    end = np.minimum(np.minimum(end_s, origin), bounds[-1])
    kept = end > start
    start, end, weight, group = start[kept], end[kept], weight[kept], group[kept]
    # Each run's first and last month; the whole months between are added through a
    # difference array, so one call costs O(jobs + groups x months), not jobs x months.
    first = np.searchsorted(bounds, start, side="right") - 1
    last = np.searchsorted(bounds, end, side="left") - 1
    cells = groups * months
    inside = np.where(first == last, end, bounds[first + 1]) - start
    seconds = np.bincount(group * months + first, weights=weight * inside, minlength=cells)
    spans = first < last
    tail = (end - bounds[last])[spans] * weight[spans]
    seconds += np.bincount(group[spans] * months + last[spans], weights=tail, minlength=cells)
    through = np.zeros(cells + 1)
    np.add.at(through, group[spans] * months + first[spans] + 1, weight[spans])
    np.add.at(through, group[spans] * months + last[spans], -weight[spans])
    running = np.cumsum(through[:-1]).reshape(groups, months)
    out: Floats = (seconds.reshape(groups, months) + running * np.diff(bounds)) / 3600.0
    return out
