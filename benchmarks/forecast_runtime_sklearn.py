"""Per-job run time: the current rule against scikit-learn quantile gradient boosting.

    python benchmarks/forecast_runtime_sklearn.py [TRACE ...]

Issue 19 item 5 asks whether a learnt model (behind the ``forecast`` extra) beats the rule
of hpcbridge/forecast/runtime.py on all three development traces. This script answers it in
one command, scoring both on exactly the jobs ``hpcbridge forecast evaluate`` scores
(completed runs longer than 0 s with a request, each predicted at its submission).

Honest by construction, as the harness is: jobs are taken in submit order and every
feature of a job comes from runs that had ended by its submission. The model is refitted
at the start of each UTC calendar month (the origin) on jobs that had ended by then, the
most recent TRAIN_ROWS of them, and predicts that month's submissions; before the first
fit (the first month) it falls back to the rule. The same features and hyperparameters
for every trace, none chosen on one trace:

- what the job asks: log requested time, log processors, queue (categorical);
- the rule's own prediction (its "same user, request and size" median is the strongest
  single guide there is);
- the user's history: last and median of the last 3 run times, median used share of the
  request, same user and size's last run time, how many runs, and the last exit (completed,
  timed out, failed, cancelled: a user whose last job failed often resubmits a fix);
- hour of day and weekday of submission.

- how far to trust the rule: which history it used (same user, request and size; same
  request; the user's share of requests; everyone's) and on how many runs.

The target is the log ratio of the run time to the rule's prediction, at the 0.5 quantile
(a median APE is scored), so a model that learns nothing returns the rule; the guess is
capped at the request like the rule's. Needs ``pip install scikit-learn``.
"""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import numpy as np
from forecast_eval import DEFAULTS  # the three development traces
from sklearn.ensemble import HistGradientBoostingRegressor

from hpcbridge.forecast.runtime import (
    FINISHED_STATES,
    FinishedJob,
    RuntimeHistory,
    RuntimePrediction,
)
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.sources.swf import SwfTrace

MIN_ROWS = 1000
"""Finished runs needed before the first fit; until then the rule predicts."""
TRAIN_ROWS = 10_000
"""The most recent ended jobs a fit sees: bounds the fit's time and follows a machine's drift."""
EXITS = {JobState.COMPLETED: 0.0, JobState.TIMEOUT: 1.0, JobState.FAILED: 2.0}
"""Last exit as a category; anything else (cancelled, unknown) is 3."""
RULE = 3
"""The column of the rule's log prediction: the model predicts the log ratio to it."""
BASES = ["same job and size", "same job", "user's share of request", "everyone's share"]
"""The rule's bases, a categorical feature: how far to trust its prediction."""
NAN = math.nan


@dataclass
class Job:
    """One SWF record, as much as a submission knows plus how it ended."""

    submit: float
    end: float  # NaN: never ran
    runtime: float
    cpus: int | None
    request: int | None
    state: JobState
    user: str | None
    queue: str | None


def read(path: Path) -> list[Job]:
    """The trace's jobs in submit order, through the SWF importer the harness uses."""
    jobs = []
    for record in SwfTrace(path).records():
        if record.submit is None:
            continue
        start = record.start.timestamp() if record.start else NAN
        end = record.end.timestamp() if record.end else NAN
        jobs.append(
            Job(
                submit=record.submit.timestamp(),
                end=end,
                runtime=end - start,
                cpus=record.alloc_cpus or None,
                request=record.req_walltime_s or None,
                state=record.state,
                user=record.user,
                queue=record.partition,
            )
        )
    jobs.sort(key=lambda job: job.submit)
    return jobs


def _log(value: float | None) -> float:
    return math.log(value) if value is not None and value > 0 else NAN


class Features:
    """Per-user history known at a submission, fed in end order."""

    def __init__(self) -> None:
        self.runs: dict[str | None, deque[int]] = {}
        self.shares: dict[str | None, deque[float]] = {}
        self.sized: dict[tuple[str | None, int | None], int] = {}
        self.count: dict[str | None, int] = {}
        self.exit: dict[str | None, float] = {}
        self.queues: dict[str | None, int] = {}

    def ended(self, job: Job) -> None:
        """Record a job that has ended (any state: its exit is a feature)."""
        self.exit[job.user] = EXITS.get(job.state, 3.0)
        if job.state not in FINISHED_STATES or math.isnan(job.runtime):
            return
        runtime = int(job.runtime)
        self.runs.setdefault(job.user, deque(maxlen=3)).append(runtime)
        if job.request:
            share = min(1.0, runtime / job.request)
            self.shares.setdefault(job.user, deque(maxlen=3)).append(share)
        self.sized[job.user, job.cpus] = runtime
        self.count[job.user] = self.count.get(job.user, 0) + 1

    def row(self, job: Job, rule: RuntimePrediction) -> list[float]:
        """The job's features at its submission."""
        runs = self.runs.get(job.user)
        shares = self.shares.get(job.user)
        moment = datetime.fromtimestamp(job.submit, UTC)
        return [
            _log(job.request),
            _log(job.cpus),
            float(self.queues.setdefault(job.queue, len(self.queues))),
            _log(rule.seconds),
            float(BASES.index(rule.basis)),
            float(rule.runs),
            _log(runs[-1]) if runs else NAN,
            _log(median(runs)) if runs else NAN,
            median(shares) if shares else NAN,
            _log(self.sized.get((job.user, job.cpus))),
            math.log1p(self.count.get(job.user, 0)),
            self.exit.get(job.user, NAN),
            float(moment.hour),
            float(moment.weekday()),
        ]


def model() -> HistGradientBoostingRegressor:
    """The one configuration used on every trace (library defaults but the loss)."""
    return HistGradientBoostingRegressor(
        loss="quantile",
        quantile=0.5,
        max_iter=50,
        categorical_features=[2, 4, 11],
        random_state=0,
    )


@dataclass
class Result:
    """Both predictors' guesses for the scored jobs, and the time it took."""

    actual: np.ndarray
    rule: np.ndarray
    learnt: np.ndarray
    basis: np.ndarray  # the rule's basis per job, an index into BASES
    seconds: float
    fits: int


class Replay:
    """A trace replayed in submit order: what had ended is known, nothing else."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.history, self.features = RuntimeHistory(), Features()
        self.ending: list[tuple[float, int]] = []
        self.rows: list[list[float]] = []  # training rows of ended scored jobs, in end order
        self.targets: list[float] = []  # their log(run time / the rule's prediction)
        self.pending: dict[int, tuple[list[float], float]] = {}  # running: row, log rule
        self.fitted: HistGradientBoostingRegressor | None = None
        self.batch: list[tuple[int, list[float], int]] = []  # (slot, row, request) this month
        self.actual: list[float] = []
        self.rule: list[float] = []
        self.learnt: list[float] = []
        self.basis: list[int] = []
        self.fits = 0

    def end_until(self, moment: float) -> None:
        """Learn from every job that had ended by ``moment``."""
        while self.ending and self.ending[0][0] <= moment:
            _, done = heapq.heappop(self.ending)
            job = self.jobs[done]
            self.features.ended(job)
            if job.state in FINISHED_STATES and not math.isnan(job.runtime):
                run = FinishedJob(job.user, None, job.request, int(job.runtime), job.cpus)
                self.history.add(run)
            if done in self.pending:
                row, log_rule = self.pending.pop(done)
                self.rows.append(row)
                self.targets.append(math.log(job.runtime) - log_rule)

    def predict_month(self) -> None:
        """Predict the month's jobs together (one ``predict`` call, not one per job): the
        model is fixed within the month and each row was built at its job's submission."""
        if self.fitted is not None and self.batch:
            matrix = np.array([row for _, row, _ in self.batch])
            guesses = np.exp(matrix[:, RULE] + self.fitted.predict(matrix))
            for (slot, _, request), guess in zip(self.batch, guesses.tolist(), strict=True):
                self.learnt[slot] = max(1.0, min(float(request), guess))
        self.batch.clear()

    def refit(self, origin: float) -> None:
        """Fit on the most recent scored jobs that had ended by ``origin``."""
        self.end_until(origin)
        if len(self.rows) >= MIN_ROWS:
            rows, targets = self.rows[-TRAIN_ROWS:], self.targets[-TRAIN_ROWS:]
            self.fitted = model().fit(np.array(rows), np.array(targets))
            self.fits += 1

    def submit(self, index: int) -> None:
        """A job is submitted: predict it if it will be scored."""
        job = self.jobs[index]
        self.end_until(job.submit)
        if math.isnan(job.end):
            return
        heapq.heappush(self.ending, (job.end, index))
        if job.state not in FINISHED_STATES or job.runtime <= 0 or job.request is None:
            return
        prediction = self.history.predict(job.user, None, job.request, job.cpus)
        row = self.features.row(job, prediction)
        self.pending[index] = (row, math.log(prediction.seconds))
        self.batch.append((len(self.actual), row, job.request))
        self.actual.append(job.runtime)
        self.rule.append(prediction.seconds)
        self.learnt.append(prediction.seconds)  # until a fitted model replaces it
        self.basis.append(BASES.index(prediction.basis))


def compare(jobs: list[Job]) -> Result:
    """Predict every scored job at its submission with the rule and the monthly model."""
    began = time.perf_counter()
    replay = Replay(jobs)
    month: tuple[int, int] | None = None
    for index, job in enumerate(jobs):
        moment = datetime.fromtimestamp(job.submit, UTC)
        if (moment.year, moment.month) != month:
            replay.predict_month()
            replay.refit(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())
            month = (moment.year, moment.month)
        replay.submit(index)
    replay.predict_month()
    return Result(
        np.array(replay.actual),
        np.array(replay.rule),
        np.array(replay.learnt),
        np.array(replay.basis),
        time.perf_counter() - began,
        replay.fits,
    )


def scores(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float, float, float]:
    """Median APE, the share under-predicted, the median shortfall of those (as a share of
    the run: a walltime that short kills the job that far from its end), the share at least
    2x over."""
    ape = np.abs(predicted - actual) / actual
    under = predicted < actual
    shortfall = float(np.median(((actual - predicted) / actual)[under])) if under.any() else 0.0
    return (
        float(np.median(ape)),
        float(under.mean()),
        shortfall,
        float(np.mean(predicted >= 2 * actual)),
    )


def main(paths: list[Path]) -> None:
    """Print one row per trace and predictor."""
    print(
        f"{'trace':<28} {'predictor':<8} {'jobs':>6} {'medAPE':>7} {'under':>6} "
        f"{'short':>6} {'2x over':>7} {'fits':>4} {'read s':>6} {'score s':>7}"
    )
    for path in paths:
        began = time.perf_counter()
        jobs = read(path)
        read_s = time.perf_counter() - began
        result = compare(jobs)
        name = path.name.split("-cln")[0]
        for label, guesses in (("rule", result.rule), ("sklearn", result.learnt)):
            ape, under, short, over = scores(guesses, result.actual)
            print(
                f"{name:<28} {label:<8} {len(result.actual):>6} {ape:>7.1%} {under:>6.0%} "
                f"{short:>6.0%} {over:>7.0%} {result.fits:>4} {read_s:>6.1f} "
                f"{result.seconds:>7.1f}"
            )


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or [p.resolve() for p in DEFAULTS])
