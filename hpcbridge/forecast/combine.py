"""The forecast the product uses: the smoothed level and last month averaged, unless a
baseline has forecast this level better before; its interval from its own replayed errors.

**Point.** Two forecasts of a group's next month each fail in their own way: the smoothed
level of :mod:`hpcbridge.forecast.model` lags a group whose usage moved to a new level and
stays there, last month's figure chases every one-month spike. Their plain mean (equal
weights: no weight to fit, the usual lesson of forecast combination) is never far from the
better of the two. Where the model forecasts an idle group at nothing, last month was
nothing too, and so is the mean.

**Never worse than a baseline.** At each origin the combination and the BASELINES are
replayed at every earlier origin j (months 1..j seen, month j + h the target, from j =
MIN_MONTHS on) over the groups a forecast made at j pools (mean above ``pool_min_mean``).
A baseline that was closer to the actual month than the combination in more than half of
those replayed forecasts is used instead, for the whole level (the one closer more often,
if both are). A plain majority, so there is no threshold to tune: on the machine total of
a site whose months scatter around a mean, the mean of the last three wins most months
and is used; for groups, where half the scored months halve or double, the combination
keeps winning.

Tried on the three traces and left out: switching to the candidate with the smallest
replayed median APE, or to the one that won most earlier origins (on short traces the
replay's early winners are noise, and the switching cost more than it saved at the account
level); weights inversely proportional to the replayed errors (mixing the mean of the last
three into a group's forecast turns an idle group's exact nothing into an infinite error);
the queue at the origin (:mod:`hpcbridge.forecast.backlog`) as a floor under the forecast:
it moves the median APE by under half a point either way (SDSC accounts 69.5% to 69.2%,
Sandia 34.5% to 34.8%, KTH unchanged), a month-start queue being a few percent of a month.
The harness goes on scoring it.

**Interval** (split-conformal on the ratio scale): the ratios actual / forecast of the
forecast used, from the same replay, give the multipliers of the point (the 10% quantile,
and the bound holding 80% of the ratios from it:
:func:`~hpcbridge.forecast.model.interval_factors`). A single series (the machine total)
has one replayed ratio per past month after the warm-up, none at the first origin: an
interval calibrated on two points under-covers however it is widened. While there are
fewer than MIN_POOL ratios, the history's own month-to-month steps (month j + h / month j
from the first month on: last month's replayed errors, which are wider than the
combination's, so the interval errs on the wide side) are pooled in, and below MIN_POOL
the interval is log-normal with Student's t for that many. With fewer than two ratios, or
for a group forecast at nothing (no point to scale), the model's own interval stands.

Only months before the origin are replayed, so neither the choice nor the interval sees
anything the forecast could not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace

from hpcbridge.forecast.arrays import Floats, np
from hpcbridge.forecast.model import MIN_MONTHS, MIN_POOL, Forecast, forecast, interval_factors


def point(history: Floats, horizon: int, pool_min_mean: float) -> tuple[Floats, Forecast]:
    """The combined point forecast of month k + ``horizon`` of each row of ``history``
    (months 1..k), and the level model's forecast it was made from (read-only arrays)."""
    values = np.asarray(history, dtype=float)  # the bytes remembered are float64's
    return _point(values.tobytes(), values.shape, horizon, pool_min_mean)


@functools.lru_cache(maxsize=512)
def _point(
    data: bytes, shape: tuple[int, ...], horizon: int, pool_min_mean: float
) -> tuple[Floats, Forecast]:
    """:func:`point`, remembered: a forecast at origin k replays every prefix of its
    history, and the harness's next origin replays the same prefixes again (the months
    before an origin do not change as it moves on), so each is computed once, not k times."""
    history = np.frombuffer(data, dtype=float).reshape(shape)
    model = forecast(history, horizon, pool_min_mean=pool_min_mean)
    mean = (model.point + history[:, -1]) / 2
    for array in (mean, model.point, model.low, model.high):
        array.setflags(write=False)
    return mean, model


BASELINES: dict[str, Callable[[Floats], Floats]] = {
    "last month": lambda seen: seen[:, -1],
    "mean of last 3": lambda seen: seen[:, -3:].mean(axis=1),
}
COMBINED = "combined"


def combined(history: Floats, horizon: int, *, pool_min_mean: float = 0.0) -> Forecast:
    """The forecast of month k + ``horizon`` of each row of ``history`` (months 1..k) by the
    combination or a baseline that beat it, with its conformal 80% interval (module
    docstring); ``method`` says which."""
    current, model = point(history, horizon, pool_min_mean)
    forecasts, actual = replay(history, horizon, pool_min_mean)
    method = COMBINED
    if len(actual):
        closer = {
            name: float(
                np.mean(np.abs(forecasts[name] - actual) < np.abs(forecasts[COMBINED] - actual))
            )
            for name in BASELINES
        }
        best = max(closer, key=lambda name: closer[name])
        if closer[best] > 0.5:
            method = best
    used = current if method == COMBINED else BASELINES[method](history)
    scaled = forecasts[method] > 0
    ratios = actual[scaled] / forecasts[method][scaled]
    if len(ratios) < MIN_POOL:
        ratios = np.concatenate([ratios, month_steps(history, horizon, pool_min_mean)])
    low, high = model.low, model.high
    if len(ratios) >= 2:
        _, low_factor, high_factor = interval_factors(ratios)
        low = np.where(used > 0, used * low_factor, model.low)
        high = np.where(used > 0, used * high_factor, model.high)
    return replace(model, point=used, low=low, high=high, method=method)


def replay(history: Floats, horizon: int, pool_min_mean: float) -> tuple[dict[str, Floats], Floats]:
    """The combination's and each baseline's forecasts at every earlier origin, and what
    the months came to, over the groups each origin pooled."""
    forecasts: dict[str, list[Floats]] = {COMBINED: [], **{name: [] for name in BASELINES}}
    actual = []
    for origin in range(MIN_MONTHS, history.shape[1] - horizon + 1):
        seen = history[:, :origin]
        pooled = seen.mean(axis=1) > pool_min_mean
        forecasts[COMBINED].append(point(seen, horizon, pool_min_mean)[0][pooled])
        for name, baseline in BASELINES.items():
            forecasts[name].append(baseline(seen)[pooled])
        actual.append(history[pooled, origin + horizon - 1])
    joined = {
        name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in forecasts.items()
    }
    return joined, np.concatenate(actual) if actual else np.zeros(0)


def month_steps(history: Floats, horizon: int, pool_min_mean: float) -> Floats:
    """Month j + ``horizon`` / month j of the pooled rows, wherever month j used anything:
    last month's own replayed errors, one per month from the first on."""
    rows = history[history.mean(axis=1) > pool_min_mean]
    before, after = rows[:, :-horizon].ravel(), rows[:, horizon:].ravel()
    used = before > 0
    steps: Floats = after[used] / before[used]
    return steps
