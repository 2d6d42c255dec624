"""What the evaluation harness measures: each method's errors at one level and horizon
(median absolute percentage error, share within +-10%, usage-weighted error, interval
coverage, run-time under- and over-prediction), and a trace's whole evaluation.

A month of nothing forecast as something counts as an infinite error, as nothing as nothing
is exact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hpcbridge.forecast.arrays import Floats, np


@dataclass(frozen=True)
class Score:
    """One method's errors at one level (account, user, machine; or job) and horizon."""

    level: str
    method: str
    horizon: int
    count: int
    median_ape: float
    within_10: float
    weighted_error: float
    coverage: float | None = None
    under_predicted: float | None = None  # share of jobs predicted shorter than they ran
    over_predicted: float | None = None  # ... and predicted at least twice as long
    group: str | None = None  # None: pooled over the level's groups


@dataclass(frozen=True)
class Target:
    """A target of the issue against what was measured."""

    name: str
    goal: str
    measured: str
    met: bool


@dataclass
class Evaluation:
    """Everything one harness run measured."""

    trace: str
    months: list[str]
    usage: list[Score] = field(default_factory=list)
    groups: list[Score] = field(default_factory=list)
    runtime: list[Score] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    chosen: dict[str, dict[str, int]] = field(default_factory=dict)  # "account h=1": origins
    seconds: float = 0.0  # scoring
    read_seconds: float = 0.0  # parsing the trace, set by whoever read it


def scored_rows(
    level: str, method: str, horizon: int, table: Floats, group: str | None = None
) -> Score:
    """Score rows of (group, forecast, actual[, low, high])."""
    coverage = None
    if table.shape[1] == 5:
        covered = (table[:, 3] <= table[:, 2]) & (table[:, 2] <= table[:, 4])
        coverage = float(covered.mean())
    scored = score(level, method, horizon, table[:, 1], table[:, 2], coverage=coverage)
    return scored if group is None else dataclasses.replace(scored, group=group)


def score(
    level: str,
    method: str,
    horizon: int,
    predicted: Floats,
    actual: Floats,
    *,
    coverage: float | None = None,
    under: float | None = None,
    over: float | None = None,
) -> Score:
    error = np.abs(predicted - actual)
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(actual > 0, error / actual, np.where(error == 0, 0.0, np.inf))
    return Score(
        level=level,
        method=method,
        horizon=horizon,
        count=len(actual),
        median_ape=float(np.median(ape)),
        within_10=float(np.mean(ape <= 0.1)),
        weighted_error=float(error.sum() / actual.sum()) if actual.sum() > 0 else float("nan"),
        coverage=coverage,
        under_predicted=under,
        over_predicted=over,
    )
