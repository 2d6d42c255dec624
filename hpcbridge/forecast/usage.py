"""Usage forecasts and allocation burn-down from the ledger.

``forecast_usage`` forecasts an account's, a user's or the whole machine's core- and
GPU-hours for the next calendar months, with 80% intervals; ``budget_burndown`` says when
an account's allocation runs out at its current burn rate and at the forecast one. Both see
only the ledger as of ``as_of``: whole months before it, split pro rata, running jobs
counted up to it (:mod:`hpcbridge.forecast.monthly`), and feed the forecast of
:mod:`hpcbridge.forecast.combine`, the same one the evaluation harness scores.

The forecast months are the calendar months that start at or after ``as_of``: on the 23rd
of November the next three are December to February. November itself, partly seen, is not
a training month; the burn-down uses its forecast for the days left in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hpcbridge.errors import ForecastError
from hpcbridge.forecast.combine import combined
from hpcbridge.forecast.model import SCORED_MEAN
from hpcbridge.forecast.monthly import Level, Series, add_months, ledger_series, month_start
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import allocation_at, usage_report

GPU_POOL_MIN = SCORED_MEAN / 10
"""SCORED_MEAN for GPU-hours: a GPU-hour is charged at about ten core-hours at most centres."""
BURN_WINDOW = timedelta(days=30)
"""The current burn rate is the account's usage over the last 30 days (or since its
allocation started, if that is more recent), per day."""
MAX_MONTHS = 12
_LONGEST_PROJECTION = 36  # months a burn-down walks forward before calling it "not exhausted"


@dataclass(frozen=True)
class MonthForecast:
    """Forecast usage of one calendar month, with its 80% prediction interval."""

    month: date  # first day of the UTC calendar month
    core_hours: float  # point forecast
    core_low: float  # 80% prediction interval
    core_high: float
    gpu_hours: float
    gpu_low: float
    gpu_high: float
    method: str = "combined"  # what made the core-hours point (hpcbridge.forecast.combine)


@dataclass(frozen=True)
class BurnDown:
    """When an account's current allocation runs out, at the current and forecast burn."""

    account: str
    as_of: datetime  # aware UTC
    granted_core_hours: float | None  # the allocation covering as_of (None: no allocation)
    allocation_starts: datetime | None
    allocation_ends: datetime | None
    used_core_hours: float  # within the allocation up to as_of (0.0 without one)
    daily_burn_current: float  # core-hours/day over BURN_WINDOW
    exhaustion_current: date | None  # at the current rate (None: not before the end)
    exhaustion_forecast: date | None  # at the forecast rate (point)
    exhaustion_early: date | None  # from the forecast's high bound
    exhaustion_late: date | None  # from the forecast's low bound
    forecast: tuple[MonthForecast, ...]


def forecast_usage(
    ledger: Ledger,
    *,
    account: str | None = None,
    user: str | None = None,
    months: int = 3,
    as_of: datetime | None = None,
    cluster: str | None = None,
) -> tuple[MonthForecast, ...]:
    """Core- and GPU-hours of ``account``, ``user`` or (neither) the machine, per month.

    ForecastError when the ledger holds fewer than three whole months before ``as_of`` or
    nothing of the account or user asked for.
    """
    if not 1 <= months <= MAX_MONTHS:
        raise ValueError(f"months {months} is not between 1 and {MAX_MONTHS}")
    moment = _as_of(as_of)
    first = 1 if moment == month_start(moment) else 2
    series, row = _group_series(ledger, account, user, moment, cluster)
    return _month_forecasts(series, row, moment, range(first, first + months))


def budget_burndown(ledger: Ledger, account: str, *, as_of: datetime | None = None) -> BurnDown:
    """The allocation of ``account`` covering ``as_of``, what is used, and when it runs out.

    Exhaustion dates are None when the allocation lasts to its end (or there is none). The
    forecast dates spend each month's forecast evenly over its days: the point forecast
    gives ``exhaustion_forecast``, the interval's high bound the earliest date and its low
    bound the latest.
    """
    moment = _as_of(as_of)
    grant = allocation_at(ledger, account, moment)
    window_start = moment - BURN_WINDOW
    used = 0.0
    if grant is not None:
        window_start = max(window_start, grant.starts)
        used = _core_hours(ledger, account, grant.starts, moment)
    days = (moment - window_start).total_seconds() / 86400
    burn = _core_hours(ledger, account, window_start, moment) / days if days > 0 else 0.0
    first = 1 if moment == month_start(moment) else 2
    series, row = _group_series(ledger, account, None, moment, None)
    last = _months_until(moment, grant.ends) if grant is not None else first + 2
    monthly = _month_forecasts(series, row, moment, range(1, max(last, first + 2) + 1))
    current = forecast_point = early = late = None
    if grant is not None:
        remaining = grant.core_hours - used
        current = _exhaustion_at_rate(moment, remaining, burn, grant.ends)
        forecast_point = _exhaustion(moment, remaining, monthly, "core_hours", grant.ends)
        early = _exhaustion(moment, remaining, monthly, "core_high", grant.ends)
        late = _exhaustion(moment, remaining, monthly, "core_low", grant.ends)
    return BurnDown(
        account=account,
        as_of=moment,
        granted_core_hours=None if grant is None else grant.core_hours,
        allocation_starts=None if grant is None else grant.starts,
        allocation_ends=None if grant is None else grant.ends,
        used_core_hours=used,
        daily_burn_current=burn,
        exhaustion_current=current,
        exhaustion_forecast=forecast_point,
        exhaustion_early=early,
        exhaustion_late=late,
        forecast=monthly[first - 1 : first + 2],
    )


def _as_of(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of.isoformat()} must be timezone-aware")
    return as_of.astimezone(UTC)


def _group_series(
    ledger: Ledger, account: str | None, user: str | None, as_of: datetime, cluster: str | None
) -> tuple[Series, int]:
    """All groups of the asked kind (the model pools their errors) and the asked one's row."""
    if account is not None and user is not None:
        raise ValueError("forecast an account or a user, not both")
    level: Level = "account" if account is not None else "user" if user is not None else "machine"
    series = ledger_series(ledger, level, as_of, cluster=cluster)
    group = account if account is not None else user if user is not None else ""
    if group not in series.groups:
        raise ForecastError(
            f"{level} {group!r} has no usage in the ledger in the whole months before "
            f"{as_of:%Y-%m-%d %H:%M:%S} UTC"
        )
    return series, series.row(group)


def _month_forecasts(
    series: Series, row: int, as_of: datetime, horizons: Sequence[int]
) -> tuple[MonthForecast, ...]:
    """One MonthForecast per horizon; horizon 1 is the month holding ``as_of``."""
    base = month_start(as_of)
    result = []
    for horizon in horizons:
        core = combined(series.core_hours, horizon, pool_min_mean=SCORED_MEAN)
        if series.gpu_hours.any():
            gpu = combined(series.gpu_hours, horizon, pool_min_mean=GPU_POOL_MIN)
            gpu_values = (float(gpu.point[row]), float(gpu.low[row]), float(gpu.high[row]))
        else:
            gpu_values = (0.0, 0.0, 0.0)  # no GPUs in this history: nothing to forecast
        result.append(
            MonthForecast(
                add_months(base, horizon - 1).date(),
                float(core.point[row]),
                float(core.low[row]),
                float(core.high[row]),
                *gpu_values,
                method=core.method,
            )
        )
    return tuple(result)


def _core_hours(ledger: Ledger, account: str, start: datetime, end: datetime) -> float:
    if end <= start:
        return 0.0
    report = usage_report(ledger, ("account",), start, end, account=account, now=end)
    return report.total.core_hours


def _months_until(as_of: datetime, end: datetime) -> int:
    """How many calendar months, counting the one holding ``as_of``, reach ``end``."""
    last = month_start(end - timedelta(microseconds=1))
    base = month_start(as_of)
    count = (last.year - base.year) * 12 + last.month - base.month + 1
    return max(1, min(count, _LONGEST_PROJECTION))


def _exhaustion_at_rate(
    as_of: datetime, remaining: float, daily: float, ends: datetime
) -> date | None:
    if remaining <= 0:
        return as_of.date()
    if daily <= 0:
        return None
    moment = as_of + timedelta(days=remaining / daily)
    return moment.date() if moment < ends else None


def _exhaustion(
    as_of: datetime,
    remaining: float,
    monthly: Sequence[MonthForecast],
    bound: str,
    ends: datetime,
) -> date | None:
    """Walk the months from ``as_of``, spending each month's ``bound`` evenly over its
    seconds (the month holding ``as_of`` only for the part after it), until ``remaining``
    is spent or the allocation ends; the last forecast month repeats past the horizon."""
    if remaining <= 0:
        return as_of.date()
    month, moment, index = month_start(as_of), as_of, 0
    while moment < ends:
        following = add_months(month, 1)
        forecast_month = monthly[min(index, len(monthly) - 1)]
        per_second = getattr(forecast_month, bound) / (following - month).total_seconds()
        until = min(following, ends)
        spent = per_second * (until - moment).total_seconds()
        if spent >= remaining and per_second > 0:
            exhausted = moment + timedelta(seconds=remaining / per_second)
            return exhausted.date() if exhausted < ends else None
        remaining -= spent
        month, moment, index = following, until, index + 1
    return None
