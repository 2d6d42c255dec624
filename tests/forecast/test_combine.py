"""The forecast the product uses: the smoothed level and last month averaged, with a
split-conformal interval from its own errors replayed before the origin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpcbridge.forecast.combine import BASELINES, combined, month_steps, point, replay
from hpcbridge.forecast.evaluate import evaluate, read_trace
from hpcbridge.forecast.model import MIN_MONTHS, forecast, interval_factors


def test_point_is_the_mean_of_the_level_model_and_last_month() -> None:
    generator = np.random.default_rng(4)
    history = 3000 * generator.lognormal(0, 0.5, size=(50, 9))
    history[:5, -3:] = 0.0  # five groups idle for the last three months
    mean, model = point(history, 1, 1000)
    assert np.allclose(mean, (forecast(history, 1, pool_min_mean=1000).point + history[:, -1]) / 2)
    assert mean[:5].tolist() == [0.0] * 5  # idle stays nothing: exact if it is
    assert np.all(model.high[:5] > 0)  # ... while a return stays inside the interval


def test_a_baseline_closer_in_most_replayed_forecasts_is_used_instead() -> None:
    generator = np.random.default_rng(8)
    # One machine, busy and quiet in turn: last month is always the wrong half.
    scatter = 50_000 * np.tile([1.0, 0.5], 10)[None, :] * generator.lognormal(0, 0.05, (1, 20))
    assert combined(scatter, 1, pool_min_mean=1000).method == "mean of last 3"
    walk = 5000 * np.exp(np.cumsum(generator.normal(0, 0.3, size=(60, 10)), axis=1))
    assert combined(walk, 1, pool_min_mean=1000).method == "last month"  # a random walk
    growth = np.outer(np.linspace(1, 3, 30), 1000 * 1.1 ** np.arange(12))  # steady growth
    assert combined(growth, 1, pool_min_mean=1000).method == "combined"
    for history in (scatter, walk, growth, 5000 * generator.lognormal(0, 0.6, size=(40, 10))):
        # By hand, each forecast from its own prefix of months only.
        closer: dict[str, list[bool]] = {name: [] for name in BASELINES}
        for origin in range(MIN_MONTHS, history.shape[1]):
            seen, actual = history[:, :origin], history[:, origin]
            own = np.abs(point(seen, 1, 1000)[0] - actual)
            for name, baseline in BASELINES.items():
                closer[name].extend(np.abs(baseline(seen) - actual) < own)
        share = {name: float(np.mean(wins)) for name, wins in closer.items()}
        best = max(share, key=lambda name: share[name])
        expected = best if share[best] > 0.5 else "combined"
        assert combined(history, 1, pool_min_mean=1000).method == expected


def test_interval_comes_from_the_used_forecasts_errors_replayed_before_the_origin() -> None:
    generator = np.random.default_rng(8)
    history = 5000 * generator.lognormal(0, 0.4, size=(30, 10))
    result = combined(history, 1, pool_min_mean=1000)
    forecasts, actual = replay(history, 1, 1000)
    used = forecasts[result.method]
    by_hand = [
        history[:, origin]
        / (
            point(history[:, :origin], 1, 1000)[0]
            if result.method == "combined"
            else BASELINES[result.method](history[:, :origin])
        )
        for origin in range(MIN_MONTHS, 10)
    ]
    assert np.allclose(actual / used, np.concatenate(by_hand))
    _, low, high = interval_factors(np.concatenate(by_hand))
    assert np.allclose(result.low, result.point * low)
    assert np.allclose(result.high, result.point * high)


def test_intervals_of_many_groups_cover_about_80_percent() -> None:
    generator = np.random.default_rng(7)
    sizes = generator.uniform(2_000, 50_000, size=(400, 1))
    history = sizes * generator.lognormal(0, 0.4, size=(400, 10))
    result = combined(history[:, :-1], 1, pool_min_mean=1000)
    actual = history[:, -1]
    assert 0.75 <= np.mean((result.low <= actual) & (actual <= result.high)) <= 0.85


def test_a_single_series_borrows_its_month_steps_and_is_calibrated() -> None:
    generator = np.random.default_rng(3)
    covered = []
    for _ in range(300):  # 300 machines, each forecast from its own 7 months only
        machine = 50_000 * generator.lognormal(0, 0.1, size=(1, 8))
        result = combined(machine[:, :-1], 1, pool_min_mean=1000)
        covered.append(result.low[0] <= machine[0, -1] <= result.high[0])
    assert 0.72 <= np.mean(covered) <= 0.88
    steps = month_steps(np.array([[100.0, 0.0, 50.0, 100.0]]), 1, 0.0)
    assert steps.tolist() == [0.0, 2.0]  # the step after an empty month has no ratio


def test_runs_of_empty_months_end_the_interval_at_the_80_percent_quantile() -> None:
    ratios = np.concatenate([np.zeros(30), np.linspace(0.5, 2.0, 70)])  # 30% came to nothing
    _, low, high = interval_factors(ratios)
    assert low == 0.0
    assert high == np.quantile(ratios, 0.8)  # not 0.9: [0, q90] would hold 90% of them
    assert np.mean((low <= ratios) & (ratios <= high)) == 0.8
    spread = np.linspace(0.5, 2.0, 101)  # no ties: about the 10% and 90% quantiles
    _, low, high = interval_factors(spread)
    assert low == np.quantile(spread, 0.1)
    assert high == pytest.approx(np.quantile(spread, 0.9), rel=0.01)


def test_remembered_forecasts_cannot_be_changed_by_a_caller() -> None:
    history = np.arange(1.0, 25.0).reshape(4, 6) * 1000
    first, _ = point(history, 1, 0.0)
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 0.0
    history[0, 0] = 5.0  # another history: computed afresh, not the remembered one
    again, _ = point(history, 1, 0.0)
    assert not np.shares_memory(again, first)
    assert point(history, 1, 0.0)[0] is again  # the same history again: remembered
    whole: Any = np.full((3, 5), 700, dtype=np.int64)  # whole core-hours, as floats
    assert point(whole, 1, 0.0)[0].tolist() == [700.0] * 3


def test_on_a_real_trace_the_model_is_never_worse_than_a_baseline_one_month_ahead(
    shared_traces: Path,
) -> None:
    kth = shared_traces / "KTH-SP2-1996-2.1-cln.swf.gz"
    result = evaluate(read_trace(kth))  # the smallest development trace: about a second
    scores = {(s.level, s.method): s for s in result.usage if s.horizon == 1}
    for level in ("account", "user", "machine"):
        model = scores[level, "model"].median_ape
        assert model <= scores[level, "last month"].median_ape
        assert model <= scores[level, "mean of last 3"].median_ape
    assert 0.75 <= (scores["user", "model"].coverage or 0.0) <= 0.85
