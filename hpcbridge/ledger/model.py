"""The monthly usage model: a level, a calibrated bias and an 80% interval, per group.

Per-group monthly usage on a shared machine is short (months, not years) and noisy (a
project runs a campaign, then nothing), so the model is deliberately small:

- **level**: an exponentially weighted mean of the group's months with ALPHA = 0.5, a
  half-life of one month. Recent months count most, yet one odd month moves the forecast
  only half way. 0.5 is the textbook middle, not fitted to any trace.
- **bias and interval**: rather than assume an error distribution, the model measures its
  own. At the origin it replays itself on every earlier origin j of the same series (level
  of months 1..j against month j + h, from j = 2 on) and pools the ratios actual / forecast
  across the groups: the point forecast is the level times the median ratio (groups' usage
  tends to decay after a busy spell, and this learns how much), the interval the level
  times the 10% and 90% quantiles. Only months before the origin are replayed, so the
  calibration sees nothing the forecast could not.
- **idle groups**: a group that used nothing last month behaves unlike an active one (its
  project may have ended; its median next month is often nothing), so ratios are pooled
  separately for the two states, an observable fact at the origin rather than a parameter;
  a state with fewer than MIN_POOL ratios borrows the whole pool.
- **few ratios** (a single series, such as the machine total, has one per past month):
  empirical 10%/90% quantiles of a handful of points under-cover, so below MIN_POOL ratios
  the interval is log-normal instead, exp(+-t s) around the level, with s the root mean
  square log ratio and t Student's 90% quantile for that many ratios (the point is the
  level itself: a median of two or three ratios is noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcbridge.errors import ForecastError
from hpcbridge.ledger.arrays import Bools, Floats, np

ALPHA = 0.5
MIN_MONTHS = 3
"""Whole months of history a forecast needs: the warm-up of the evaluation, too."""
SCORED_MEAN = 1000.0
"""Core-hours a month a group must average to be scored by the evaluation and to join the
interval calibration (tiny groups' noise would widen everyone's interval)."""
MIN_POOL = 20
"""Ratios below which empirical quantiles give way to the log-normal interval."""
COVERAGE = 0.8
_LOW_Q, _HIGH_Q = (1 - COVERAGE) / 2, (1 + COVERAGE) / 2
_Z = 1.2815515655446004  # the standard normal 90% quantile
_FIRST_REPLAY = 2  # a level of one month is that month, not a forecast worth calibrating on
_SMALLEST_RATIO = 1e-3  # a month of nothing after a forecast of something: log() needs > 0


@dataclass(frozen=True)
class Forecast:
    """Per group (rows of the history): point forecast and 80% interval for one month."""

    point: Floats
    low: Floats
    high: Floats


def level(history: Floats) -> Floats:
    """The exponentially weighted mean of each row, the last month weighing ALPHA."""
    return _levels(history)[:, -1]


def _levels(history: Floats) -> Floats:
    """Column j - 1 is the level of months 1..j: every prefix's level in one pass."""
    levels = np.empty(history.shape)
    levels[:, 0] = history[:, 0]
    for month in range(1, history.shape[1]):
        levels[:, month] = ALPHA * history[:, month] + (1 - ALPHA) * levels[:, month - 1]
    return levels


def forecast(history: Floats, horizon: int, *, pool_min_mean: float = 0.0) -> Forecast:
    """Forecast month k + ``horizon`` of each row from its months 1..k (oldest first).

    The calibration pools the rows whose mean over the replayed months exceeds
    ``pool_min_mean`` (tiny groups are noise that would widen everyone's interval); where
    none does, every row with a forecast above zero. A horizon longer than the history can
    replay is calibrated at the longest one it can.
    """
    months = history.shape[1]
    if months < MIN_MONTHS:
        raise ForecastError(
            f"{months} whole month(s) of history; a forecast needs at least {MIN_MONTHS}"
        )
    if horizon < 1:
        raise ValueError(f"horizon {horizon} is not a positive number of months")
    ratios, idle = past_ratios(history, min(horizon, months - _FIRST_REPLAY), pool_min_mean)
    current = level(history)
    point, low, high = (np.empty_like(current) for _ in range(3))
    now_idle = history[:, -1] == 0
    for state in (False, True):
        rows = now_idle == state
        if rows.any():
            same = ratios[idle == state]
            factors = _factors(same if len(same) >= MIN_POOL else ratios)
            point[rows], low[rows], high[rows] = (current[rows] * f for f in factors)
    return Forecast(point, low, high)


def _factors(ratios: Floats) -> tuple[float, float, float]:
    """(point, low, high) multipliers of the level: the pooled ratios' median and 80%
    quantiles, or with few ratios the log-normal interval around the level itself."""
    if len(ratios) >= MIN_POOL:
        low, bias, high = np.quantile(ratios, [_LOW_Q, 0.5, _HIGH_Q])
        return float(bias), float(low), float(high)
    logs = np.log(np.maximum(ratios, _SMALLEST_RATIO))
    spread = _student_90(len(logs)) * math.sqrt(float(np.mean(logs**2)))
    return 1.0, math.exp(-spread), math.exp(spread)


def past_ratios(history: Floats, horizon: int, pool_min_mean: float) -> tuple[Floats, Bools]:
    """actual / forecast of month j + horizon from months 1..j, for every replayable j, and
    whether the group was idle (used nothing) in month j."""
    months = history.shape[1]
    origins = np.arange(_FIRST_REPLAY, months - horizon + 1)  # j: months 1..j are seen
    means = np.cumsum(history, axis=1) / np.arange(1, months + 1)
    columns = (
        history[:, origins + horizon - 1],
        _levels(history)[:, origins - 1],
        means[:, origins - 1] > pool_min_mean,
        history[:, origins - 1] == 0,
    )
    rows = np.stack([column.ravel() for column in columns], axis=1)
    usable = rows[rows[:, 1] > 0]
    chosen = usable[usable[:, 2] > 0] if np.any(usable[:, 2] > 0) else usable
    if not len(chosen):
        raise ForecastError("no usage in the history to calibrate a forecast on")
    return chosen[:, 0] / chosen[:, 1], chosen[:, 3] > 0


def _student_90(count: int) -> float:
    """Student's t 90% quantile for ``count`` degrees of freedom (Cornish-Fisher, within
    2% of the table from 2 on; 12% low at 1, where any interval is a guess)."""
    z, nu = _Z, float(count)
    return z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)
