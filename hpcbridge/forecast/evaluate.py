"""The evaluation harness: every forecasting method and every baseline, scored in one run.

Honest by construction:

- usage: core-hours (allocated processors x run time) split pro rata across UTC calendar
  months; the partial first and last months dropped. Origins roll a month at a time after
  WARMUP months; at origin k the series is rebuilt by :func:`~hpcbridge.forecast.monthly.
  job_series` *clipped at the origin* (a job still running then counts only up to it, later
  jobs not at all) and only its first k months are handed to a method, which forecasts
  month k + h. Which groups are scored (mean of the k training months above SCORED_MEAN
  core-hours) is decided from those same months, never from the target;
- runtime: jobs are taken in submit order and the predictor's history holds only jobs that
  had ended by then (fed from a heap ordered by end time); every completed job that ran
  for more than 0 s is scored.

Scores: median absolute percentage error (APE; a month of nothing forecast as something
counts as an infinite error, as nothing as nothing is exact), the share within +-10%, the
usage-weighted error sum |error| / sum actual, and for the model the 80% interval's
coverage; runtime adds the under-prediction rate (a job predicted shorter than it ran
would be killed with that walltime) and the over-prediction rate (predicted at least twice
as long as it ran: a walltime that wide keeps it from backfilling).
"""

from __future__ import annotations

import functools
import heapq
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hpcbridge.errors import ForecastError
from hpcbridge.forecast.arrays import Bools, Floats, Ints, np
from hpcbridge.forecast.backlog import backlog
from hpcbridge.forecast.combine import BASELINES, combined
from hpcbridge.forecast.model import SCORED_MEAN, forecast
from hpcbridge.forecast.monthly import add_months, first_full_month, job_series, month_start
from hpcbridge.forecast.runtime import FINISHED_STATES, FinishedJob, RuntimeHistory
from hpcbridge.forecast.scores import Evaluation, Score, score, scored_rows
from hpcbridge.forecast.targets import targets
from hpcbridge.ledger.sources.swf import SwfTrace

WARMUP = 3
HORIZONS = (1, 3)


@dataclass(frozen=True)
class TraceJobs:
    """A trace's jobs as arrays (NaN where a time or the request is unknown)."""

    submit: Floats
    start: Floats
    end: Floats
    cpus: Floats
    request: Floats
    finished: Bools  # ended COMPLETED (or TIMEOUT): the runs that are learnt from and scored
    user: Ints
    account: Ints
    users: tuple[str | None, ...]  # by index; None: the trace does not say
    accounts: tuple[str | None, ...]


def read_trace(
    source: str | Path | SwfTrace, *, progress: Callable[[int], None] | None = None
) -> TraceJobs:
    """A trace's jobs through the SWF importer's own parsing; ``progress`` gets jobs read.

    Given an SwfTrace rather than a path, its ``bad_lines`` then list the lines skipped, for
    the caller to report as ``ledger import-swf`` does.
    """
    trace = source if isinstance(source, SwfTrace) else SwfTrace(source)
    columns: list[list[float]] = [[], [], [], [], []]
    finished: list[bool] = []
    users: dict[str | None, int] = {}
    accounts: dict[str | None, int] = {}
    user: list[int] = []
    account: list[int] = []
    for count, record in enumerate(trace.records(), start=1):
        for values, moment in zip(columns, (record.submit, record.start, record.end), strict=False):
            values.append(np.nan if moment is None else moment.timestamp())
        columns[3].append(float(record.alloc_cpus or 0))
        columns[4].append(np.nan if not record.req_walltime_s else float(record.req_walltime_s))
        finished.append(record.state in FINISHED_STATES)
        user.append(users.setdefault(record.user, len(users)))
        account.append(accounts.setdefault(record.account, len(accounts)))
        if progress is not None and count % 10_000 == 0:
            progress(count)
    submit, start, end, cpus, request = (np.array(values, dtype=float) for values in columns)
    return TraceJobs(
        submit=submit,
        start=start,
        end=end,
        cpus=cpus,
        request=request,
        finished=np.array(finished, dtype=bool),
        user=np.array(user, dtype=np.int64),
        account=np.array(account, dtype=np.int64),
        users=tuple(users),
        accounts=tuple(accounts),
    )


def evaluate(
    jobs: TraceJobs, *, trace: str = "", warmup: int = WARMUP, horizons: tuple[int, ...] = HORIZONS
) -> Evaluation:
    """Score the usage model and its baselines, the runtime predictor and its baselines."""
    started = time.perf_counter()
    bounds = month_bounds(jobs)
    if len(bounds) - 1 <= warmup:
        raise ForecastError(
            f"the trace holds {max(0, len(bounds) - 1)} whole month(s); scoring needs more than "
            f"the {warmup} months of warm-up"
        )
    result = Evaluation(trace, [f"{datetime.fromtimestamp(b, UTC):%Y-%m}" for b in bounds[:-1]])
    ran = ~np.isnan(jobs.start) & ~np.isnan(jobs.end)
    for level, group, names in (
        ("account", jobs.account, jobs.accounts),
        ("user", jobs.user, jobs.users),
        ("machine", np.zeros(len(jobs.cpus), dtype=np.int64), ("",)),
    ):
        # Jobs of no known account (user) belong to no group, as in the ledger's series.
        known = np.array([name is not None for name in names], dtype=bool)[group]
        counted = ran & known
        series_at = functools.partial(
            job_series,
            jobs.start[counted],
            jobs.end[counted],
            jobs.cpus[counted],
            group[counted],
            groups=len(names),
            bounds=bounds,
        )
        queue_at = functools.partial(
            backlog,
            submit=jobs.submit[known],
            start=jobs.start[known],
            end=jobs.end[known],
            cpus=jobs.cpus[known],
            request=jobs.request[known],
            group=group[known],
            groups=len(names),
        )
        pooled, per_group, chosen = _score_usage(
            level, names, series_at, queue_at, bounds, warmup=warmup, horizons=horizons
        )
        result.usage += pooled
        result.groups += per_group
        result.chosen |= chosen
    result.runtime = _score_runtime(jobs)
    result.targets = targets(result)
    result.seconds = time.perf_counter() - started
    return result


def month_bounds(jobs: TraceJobs) -> Floats:
    """Edges of the whole months between the first and last submission."""
    submitted = jobs.submit[~np.isnan(jobs.submit)]
    if not len(submitted):
        return np.array([])
    first = first_full_month(datetime.fromtimestamp(float(submitted.min()), UTC))
    last = month_start(datetime.fromtimestamp(float(submitted.max()), UTC))
    edges = [first]
    while edges[-1] < last:
        edges.append(add_months(edges[-1], 1))
    return np.array([edge.timestamp() for edge in edges])


def _score_usage(
    level: str,
    names: tuple[str | None, ...],
    series_at: Callable[..., Floats],
    queue_at: Callable[..., Floats],
    bounds: Floats,
    *,
    warmup: int,
    horizons: tuple[int, ...],
) -> tuple[list[Score], list[Score], dict[str, dict[str, int]]]:
    """Scores pooled over the level's groups, each group's own (model and last month, one
    month ahead), and at how many origins the model used each method.

    One month ahead the model is also scored with the queue at the origin as a floor under
    it (:mod:`hpcbridge.forecast.backlog`): the month cannot use less than what is already
    queued and running, times the share of their requests the group's jobs use."""
    months = len(bounds) - 1
    actual_all = series_at(origin=float(bounds[-1]))
    collected: dict[tuple[str, int], list[Floats]] = {}
    chosen: dict[str, dict[str, int]] = {}
    for origin in range(warmup, months):
        seen = series_at(origin=float(bounds[origin]))[:, :origin]  # months before the origin only
        scored = seen.mean(axis=1) > SCORED_MEAN if level != "machine" else np.ones(1, bool)
        if not scored.any():
            continue
        for horizon in horizons:
            if origin + horizon > months:
                continue
            actual = actual_all[scored, origin + horizon - 1]
            model = combined(seen, horizon, pool_min_mean=SCORED_MEAN)
            used = chosen.setdefault(f"{level} h={horizon}", {})
            used[model.method] = used.get(model.method, 0) + 1
            level_model = forecast(seen, horizon, pool_min_mean=SCORED_MEAN)
            rows = [
                ("model", model.point, model.low, model.high),
                ("smoothed level", level_model.point, level_model.low, level_model.high),
            ] + [(name, method(seen), None, None) for name, method in BASELINES.items()]
            if horizon == 1:
                month_s = float(bounds[origin + 1] - bounds[origin])
                queue = queue_at(origin=float(bounds[origin]), month_s=month_s)
                rows.append((QUEUE_FLOOR, np.maximum(model.point, queue), None, None))
            for name, point, low, high in rows:
                columns = [np.flatnonzero(scored).astype(float), point[scored], actual]
                if low is not None and high is not None:
                    columns += [low[scored], high[scored]]
                collected.setdefault((name, horizon), []).append(np.stack(columns, axis=1))
    scores: list[Score] = []
    per_group: list[Score] = []
    for (name, horizon), parts in collected.items():
        table = np.concatenate(parts)
        scores.append(scored_rows(level, name, horizon, table))
        if level != "machine" and horizon == 1 and name in _PER_GROUP:
            for row in np.unique(table[:, 0]):
                rows = table[table[:, 0] == row]
                per_group.append(scored_rows(level, name, horizon, rows, names[int(row)]))
    return scores, per_group, chosen


_PER_GROUP = ("model", "last month")
QUEUE_FLOOR = "model, queue floor"


def _score_runtime(jobs: TraceJobs) -> list[Score]:
    """Predict every job at its submission from the runs that had ended by then."""
    # Plain lists: the loop reads single values, where numpy scalars cost ten times more.
    start, end, finished = jobs.start.tolist(), jobs.end.tolist(), jobs.finished.tolist()
    # Allocated processors stand for the requested ones, known at submission: in the three
    # development traces they differ for under 1% of the scored jobs.
    cpus = [int(c) if c > 0 else None for c in jobs.cpus.tolist()]
    requests = [None if math.isnan(r) else int(r) for r in jobs.request.tolist()]
    users = [jobs.users[u] for u in jobs.user.tolist()]
    history = RuntimeHistory()
    last_two: dict[str | None, deque[int]] = {}
    ending: list[tuple[float, int]] = []
    predicted: dict[str, list[float]] = {"model": [], "requested walltime": [], "last two": []}
    actual: list[float] = []
    submitted = ~np.isnan(jobs.submit)
    for index, submit in zip(
        np.flatnonzero(submitted)[np.argsort(jobs.submit[submitted], kind="stable")].tolist(),
        np.sort(jobs.submit[submitted], kind="stable").tolist(),
        strict=True,
    ):
        while ending and ending[0][0] <= submit:
            _, done = heapq.heappop(ending)
            runtime = int(end[done] - start[done])
            history.add(FinishedJob(users[done], None, requests[done], runtime, cpus[done]))
            last_two.setdefault(users[done], deque(maxlen=2)).append(runtime)
        runtime = end[index] - start[index]
        if not finished[index] or math.isnan(runtime):
            continue
        heapq.heappush(ending, (end[index], index))
        request = requests[index]
        if runtime <= 0 or request is None:
            continue  # scored: completed runs with a request to compare the baselines against
        recent = last_two.get(users[index])
        predicted["model"].append(history.predict(users[index], None, request, cpus[index]).seconds)
        predicted["requested walltime"].append(request)
        predicted["last two"].append(min(request, sum(recent) / len(recent)) if recent else request)
        actual.append(runtime)
    real = np.array(actual)
    scores = []
    for name, values in predicted.items():
        guesses = np.array(values)
        under = float(np.mean(guesses < real)) if len(real) else float("nan")
        over = float(np.mean(guesses >= 2 * real)) if len(real) else float("nan")
        scores.append(score("job", name, 0, guesses, real, under=under, over=over))
    return scores
