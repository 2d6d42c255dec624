"""The monthly usage model: a level, a calibrated bias and an 80% interval, per group.

Per-group monthly usage on a shared machine is short (months, not years) and noisy (a
project runs a campaign, then nothing), so the model is deliberately small, and every
choice it makes at an origin is made from the months before that origin only:

- **level**: an exponentially weighted mean of the group's months. Its smoothing constant
  is picked at each origin from ALPHAS, the weight of the past (1 - alpha) halving from
  3/4 to 1/8, by the same replay that calibrates the bias (below): the one whose replayed
  forecasts have the smallest pooled median absolute percentage error, the harness's
  headline score; 0.5 (a half-life of one month, the textbook middle) wins ties. Usage
  that drifts (a random walk) is best followed month to month, alpha near 1, close to
  the naive last month; usage that scatters around a steady mean is best smoothed; which
  kind a site has is read off its own history, not fixed here. alpha = 1 (the last month
  alone) is not a candidate: an idle group's level would be 0, leaving its interval no
  scale to stand on.
- **bias and interval**: rather than assume an error distribution, the model measures its
  own. At the origin it replays itself on every earlier origin j of the same series (level
  of months 1..j against month j + h, from j = 2 on) and pools the ratios actual / forecast
  across the groups: the point forecast is the level times the median ratio (groups' usage
  tends to decay after a busy spell, and this learns how much), the interval the level
  times the 10% quantile and the bound holding 80% of the ratios from it (the 90% quantile
  but where many months came to nothing: :func:`interval_factors`). Only months before
  the origin are replayed, so the calibration sees nothing the forecast could not.

The product forecasts with this level averaged with last month
(:mod:`hpcbridge.forecast.combine`); the harness scores both.
- **idle groups**: a group that used nothing last month behaves unlike an active one (its
  project may have ended; its median next month is often nothing), so ratios are pooled
  separately for the two states, an observable fact at the origin rather than a parameter.
  An idle group's point is the median of the idle state's own ratios whenever the replay
  holds any: where most idle groups stayed idle that is 0, and the forecast is 0 (scored
  exactly when the month is indeed empty), while its interval still scales the (positive)
  level by the ratio quantiles, so a return stays inside it. A median needs few ratios;
  the 10% and 90% quantiles need MIN_POOL, and a state with fewer ratios borrows the whole
  pool for its interval (an active state for its point, too).
- **few ratios** (a single series, such as the machine total, has one per past month):
  empirical 10%/90% quantiles of a handful of points under-cover, so below MIN_POOL ratios
  the interval is log-normal instead, exp(+-t s) around the level, with s the root mean
  square log ratio and t Student's 90% quantile for that many ratios (the point is the
  level itself: a median of two or three ratios is noise).

Tried on the development trace and left out, as they did not win the median APE and the
usage-weighted error together: the multiplier that minimises the replay's median APE
instead of the median ratio (it sits below the median, and what it gains in median APE
it loses in weighted error), searched per state or for the pool as a whole; a third
state (active months below the level apart from those above it); the smoothing constant
chosen on the one-month replay for every horizon instead of each horizon's own replay;
choosing it by the replay's weighted error. A blend of the last month and the level (not
tried apart) is near enough the same family as the smoothing constant. The machine total's
interval is left as it is: over a year of months its coverage is a count out of a
handful, and narrowing it would mean fitting that handful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcbridge.errors import ForecastError
from hpcbridge.forecast.arrays import Bools, Floats, np

ALPHA = 0.5
ALPHAS = (ALPHA, 0.25, 0.75, 0.875)
"""The smoothing constants a forecast picks from, the default first: it wins ties."""
MIN_MONTHS = 3
"""Whole months of history a forecast needs: the warm-up of the evaluation, too."""
SCORED_MEAN = 1000.0
"""Core-hours a month a group must average to be scored by the evaluation and to join the
interval calibration (tiny groups' noise would widen everyone's interval)."""
MIN_POOL = 20
"""Ratios below which empirical quantiles give way to the log-normal interval."""
COVERAGE = 0.8
_LOW_Q = (1 - COVERAGE) / 2
_Z = 1.2815515655446004  # the standard normal 90% quantile
_FIRST_REPLAY = 2  # a level of one month is that month, not a forecast worth calibrating on
_SMALLEST_RATIO = 1e-3  # a month of nothing after a forecast of something: log() needs > 0

_Factors = tuple[float, float, float]  # (point, low, high) multipliers of the level


@dataclass(frozen=True)
class Forecast:
    """Per group (rows of the history): point forecast and 80% interval for one month, the
    smoothing constant of the level they scale, and the method that made the point."""

    point: Floats
    low: Floats
    high: Floats
    alpha: float = ALPHA
    method: str = "smoothed level"  # what made the point (hpcbridge.forecast.combine)


def level(history: Floats, alpha: float = ALPHA) -> Floats:
    """The exponentially weighted mean of each row, the last month weighing ``alpha``."""
    return _levels(history, alpha)[:, -1]


def _levels(history: Floats, alpha: float = ALPHA) -> Floats:
    """Column j - 1 is the level of months 1..j: every prefix's level in one pass."""
    levels = np.empty(history.shape)
    levels[:, 0] = history[:, 0]
    for month in range(1, history.shape[1]):
        levels[:, month] = alpha * history[:, month] + (1 - alpha) * levels[:, month - 1]
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
    replayed = min(horizon, months - _FIRST_REPLAY)
    best: tuple[float, float, dict[bool, _Factors]] | None = None
    for alpha in ALPHAS:
        ratios, idle = past_ratios(history, replayed, pool_min_mean, alpha=alpha)
        factors = state_factors(ratios, idle)
        points = np.where(idle, factors[True][0], factors[False][0])
        loss = median_ape(points, ratios)
        if best is None or loss < best[0]:
            best = (loss, alpha, factors)
    assert best is not None  # ALPHAS is not empty
    _, alpha, factors = best
    current = level(history, alpha)
    point, low, high = (np.empty_like(current) for _ in range(3))
    now_idle = history[:, -1] == 0
    for state in (False, True):
        rows = now_idle == state
        if rows.any():
            point[rows], low[rows], high[rows] = (current[rows] * f for f in factors[state])
    return Forecast(point, low, high, alpha)


def state_factors(ratios: Floats, idle: Bools) -> dict[bool, _Factors]:
    """(point, low, high) multipliers of the level for active (False) and idle (True)
    groups, from the replayed ratios and whether each came after an idle month."""
    factors = {}
    for state in (False, True):
        same = ratios[idle == state]
        point, low, high = interval_factors(same if len(same) >= MIN_POOL else ratios)
        if state and len(same):
            point = float(np.median(same))  # a median needs few ratios; quantiles need more
        factors[state] = (point, low, high)
    return factors


def median_ape(points: Floats, ratios: Floats) -> float:
    """The median absolute percentage error of forecasts ``points`` x level of months that
    came to ``ratios`` x level, scored as the harness does (nothing forecast as nothing is
    exact, something as nothing an infinite error)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.where(
            ratios > 0, np.abs(points - ratios) / ratios, np.where(points == 0, 0.0, np.inf)
        )
    return float(np.median(errors))


def interval_factors(ratios: Floats) -> _Factors:
    """(point, low, high) multipliers of the level: the pooled ratios' median and an 80%
    interval, or with few ratios the log-normal interval around the level itself.

    The interval starts at the 10% quantile and ends where 80% of the ratios lie between
    the two: the 90% quantile, unless the 10% quantile sits on a run of equal ratios, as it
    does where more than a tenth of the months came to nothing (ratio 0); then [0, 90%
    quantile] would hold 90% of them, and [0, 80% quantile] is the 80% interval.
    """
    if len(ratios) >= MIN_POOL:
        low, bias = np.quantile(ratios, [_LOW_Q, 0.5])
        below = float(np.mean(ratios < low))
        high = np.quantile(ratios, min(1.0, below + COVERAGE))
        return float(bias), float(low), float(high)
    logs = np.log(np.maximum(ratios, _SMALLEST_RATIO))
    spread = _student_90(len(logs)) * math.sqrt(float(np.mean(logs**2)))
    return 1.0, math.exp(-spread), math.exp(spread)


def past_ratios(
    history: Floats, horizon: int, pool_min_mean: float, *, alpha: float = ALPHA
) -> tuple[Floats, Bools]:
    """actual / forecast of month j + horizon from the level of months 1..j, for every
    replayable j, and whether the group was idle (used nothing) in month j."""
    months = history.shape[1]
    origins = np.arange(_FIRST_REPLAY, months - horizon + 1)  # j: months 1..j are seen
    means = np.cumsum(history, axis=1) / np.arange(1, months + 1)
    columns = (
        history[:, origins + horizon - 1],
        _levels(history, alpha)[:, origins - 1],
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
