"""Report periods, and the exact split of grouped usage sums across them.

The usage query (hpcbridge.ledger.usage_sql) leaves the database with one row per group: sums
of cpus and of cpus x the charge in the group's first and last period (likewise GPUs) and a
packed placement saying which periods the group's attempts span. Here those rows become
per-period core- and GPU-seconds: whole arithmetic on integers, so reports, the rollup and a
scan from scratch agree exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple


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


@dataclass(frozen=True, slots=True)
class Placement:
    """An unpacked placement: the periods an attempt spans, and whether it was clipped."""

    first: int
    last: int
    starts_before: bool
    ends_after: bool


def placement(packed: int, periods: Periods) -> Placement:
    """The inverse of usage_sql's ``_placement_expression``."""
    count = len(periods)
    rest, last_code = divmod(packed, count + 1)
    edge, first = divmod(rest, count)
    # A zero-length attempt on a boundary "ends" (end - 1) in the period before it starts.
    last = first if last_code == 0 else max(first, last_code - 1)
    return Placement(first, last, starts_before=edge >= 2, ends_after=edge % 2 == 1)


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


def charged_between(charged: int, start: int, end: int, low: int, high: int) -> int:
    """usage_sql.charged_between in Python: the part of ``charged`` seconds in [low, high)."""
    length = end - start
    if charged == length:
        return high - low
    if length == 0:
        return charged
    return charged * (high - start) // length - charged * (low - start) // length


def spread(raw: Any, periods: Periods) -> Spread:
    """Split one grouped row's sums over the periods it spans (see the module docstring)."""
    where = placement(int(raw["placement"]), periods)
    # Whole numbers (PostgreSQL sums integers as exact Decimals).
    cpus, gpus = int(raw["cpus"] or 0), int(raw["gpus"] or 0)
    first, last, started_here = where.first, where.last, not where.starts_before
    if raw.get("single_start") is not None:
        return Spread(_single(raw, periods, where), range(0), 0, 0)
    cpu_first, gpu_first = int(raw["cpu_first"] or 0), int(raw["gpu_first"] or 0)
    if first == last:
        return Spread([Share(first, cpu_first, gpu_first, started_here)], range(0), cpus, gpus)
    cpu_last, gpu_last = int(raw["cpu_last"] or 0), int(raw["gpu_last"] or 0)
    return Spread(
        [
            Share(first, cpu_first, gpu_first, started_here),
            Share(last, cpu_last, gpu_last, False),
        ],
        range(first + 1, last),
        cpus,
        gpus,
    )


def _single(raw: Any, periods: Periods, where: Placement) -> list[Share]:
    """The shares of a group of one long attempt charged other than its length (or of a few
    with the same start, end and charge): its charge split period by period."""
    cpus, gpus = int(raw["cpus"] or 0), int(raw["gpus"] or 0)
    start, end = int(raw["single_start"]), int(raw["single_end"])
    charged, bounds = int(raw["single_charged"]), periods.bounds
    started_here = not where.starts_before
    shares = []
    for period in range(where.first, where.last + 1):
        low, high = max(start, bounds[period]), min(end, bounds[period + 1])
        seconds = charged_between(charged, start, end, low, high)
        shares.append(Share(period, cpus * seconds, gpus * seconds, started_here))
        started_here = False
    return shares


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
