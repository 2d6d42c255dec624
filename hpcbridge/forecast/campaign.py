"""Campaign forecasts: the core- and GPU-hours a planned workflow or sweep will use, with an
80% interval, for grant requests and capacity planning.

**Point.** Each planned job's run time is the run-time predictor's
(:class:`~hpcbridge.forecast.runtime.RuntimeHistory`: the median of the last runs of the same
user, job name, request and size, else the user's or everyone's used share of the request),
fed with the runs that ended by ``as_of``. A job's core-hours are its cores x that run time;
a stage of ``count`` jobs (an array's tasks, a sweep's rows) counts it ``count`` times.

**Interval, from the predictor's own errors.** The ledger's past runs are replayed in time
order: each is predicted at its submission from the runs that had ended by then, exactly as
a plan is predicted now, and once it has ended its ratio actual / predicted is kept. Every
run that started counts, failed ones too (a campaign pays for its failures; only finished
runs teach the predictor, as they do for advice), but not one of no length: a job cancelled
in the queue is recorded so, and a plan's jobs are meant to run. A planned job's interval
resamples the ratios of the most specific pool holding at least MIN_RATIOS of them: this
job's own (same user, name and request), the user's at the same basis of prediction,
everyone's at that basis. So a job predicted from its own repeated runs gets that job's
spread, a new job the spread of guesses made the same way (never that of another basis: a
user's share of the request errs far more widely than a repeated job's median). It is
honest because nothing is fitted: the errors are those the same predictor made on runs it
had not yet seen, and only runs that ended by ``as_of`` are replayed.

**A sum of many jobs.** DRAWS simulated campaigns. In each, every stage takes *one* ratio
for all its jobs (an array's tasks are one program on like inputs: when one runs longer than
predicted, so do the others; drawn independently, a thousand-task array would look
certain), and all stages of one user take their ratio at the same quantile of their own
pools (one user's jobs share code, inputs and habits of asking, so they err together);
users draw independently of each other. A run is predicted x ratio, never more than its
walltime (the scheduler ends it there). The interval is the 10% and 90% quantile of the
simulated totals; the point is their mean, the expected total (the ratios are skewed: the
sum of the predictor's medians alone falls short of what a campaign uses). On the three
development traces, with each month's submitted jobs as a campaign planned at its start
(``benchmarks/forecast_campaign.py``), independent stages covered the total in 43-59% of
months, one draw for the whole campaign in all of them with an interval 1.4 to 2.4 times the
point; one per user covers 67-76%. A stage with fewer than MIN_RATIOS errors anywhere (a
ledger that knows too little) is not simulated: its interval is nothing to its whole
request, added as such to the total's bounds, and ``note`` says so.

Left out: retries (a stage's ``retry`` resubmits only after a failure in one of its states;
each run is forecast once) and the queue wait. A segment chain (``checkpoint.total_runtime``)
is its segments, each forecast as a stage from earlier runs of the same segment.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hpcbridge.errors import ForecastError
from hpcbridge.forecast.arrays import Floats, np
from hpcbridge.forecast.runtime import (
    FINISHED_STATES,
    FinishedJob,
    RuntimeHistory,
    RuntimePrediction,
)

if TYPE_CHECKING:
    from hpcbridge.ledger.store import Ledger

MIN_RATIOS = 20
"""Replayed errors a pool needs before its 10% and 90% quantiles mean anything (one in ten
below the interval needs a few tens to be seen at all); as the usage forecasts' MIN_POOL."""
DRAWS = 4000
COVERAGE = (0.1, 0.9)
REPLAY_RUNS = 5000
"""Everyone's most recent runs replayed from the ledger (the users' own are read besides)."""
USER_RUNS = 1000
_HOUR = 3600.0
NO_HISTORY = "no replayed errors: nothing to the whole request"


@dataclass(frozen=True)
class PlannedJob:
    """One line of a plan: ``count`` like jobs (a stage, an array's tasks, a sweep's rows)."""

    label: str  # how the plan names it (the stage)
    user: str | None
    name: str | None  # the job name the ledger records its runs under
    request_s: int | None  # its walltime
    cpus: int  # cores of one job
    gpus: int = 0  # GPUs of one job
    count: int = 1


@dataclass(frozen=True)
class PastRun:
    """A run from the ledger or a trace, as the replay needs it."""

    submit_s: float
    end_s: float
    job: FinishedJob
    learnt: bool  # ended in FINISHED_STATES: the predictor learns from it


@dataclass(frozen=True)
class StageForecast:
    """One line of the plan: its run time, basis, and hours with their 80% interval."""

    label: str
    count: int
    cpus: int
    gpus: int
    request_s: int | None
    predicted_s: int  # one job's, by the predictor
    basis: str  # of the prediction
    runs: int  # finished runs the prediction rests on
    errors: str  # which replayed errors the interval resamples
    ratios: int  # how many
    core_hours: float
    core_low: float
    core_high: float
    gpu_hours: float
    gpu_low: float
    gpu_high: float


@dataclass(frozen=True)
class CampaignForecast:
    """Every stage's forecast and the campaign's total."""

    stages: list[StageForecast]
    core_hours: float
    core_low: float
    core_high: float
    gpu_hours: float
    gpu_low: float
    gpu_high: float
    replayed: int  # past runs whose errors were replayed
    as_of: datetime
    note: str | None = None
    unsimulated: list[str] = field(default_factory=list)  # stages bounded by their request


class ReplayedHistory:
    """The predictor and its replayed errors: give it past runs in submit order
    (:meth:`submitted`), then :meth:`advance` to the moment of the plan."""

    def __init__(self) -> None:
        self.predictor = RuntimeHistory()
        self._ratios: dict[Hashable, list[float]] = {}
        self._ending: list[tuple[float, int, PastRun, RuntimePrediction | None]] = []
        self._order = itertools.count()
        self.replayed = 0

    def submitted(self, run: PastRun) -> None:
        """Predict ``run`` from what has ended by its submission; its error counts once it ends."""
        self.advance(run.submit_s)
        job = run.job
        try:
            prediction = self.predictor.predict(job.user, job.name, job.request_s, job.cpus)
        except ForecastError:
            prediction = None
        heapq.heappush(self._ending, (run.end_s, next(self._order), run, prediction))

    def advance(self, moment: float) -> None:
        """Everything that ended by ``moment`` teaches the predictor and adds its error."""
        while self._ending and self._ending[0][0] <= moment:
            _, _, run, prediction = heapq.heappop(self._ending)
            job = run.job
            if run.learnt:
                self.predictor.add(job)
            if prediction is not None and job.runtime_s > 0:
                self.replayed += 1
                ratio = job.runtime_s / prediction.seconds
                for key in _pools(job.user, job.name, job.request_s, prediction.basis):
                    self._ratios.setdefault(key, []).append(ratio)

    def errors(
        self, user: str | None, name: str | None, request_s: int | None, basis: str
    ) -> tuple[str, Floats]:
        """The most specific pool of replayed ratios with at least MIN_RATIOS, and its name;
        (NO_HISTORY, empty) if none has."""
        for key, what in zip(_pools(user, name, request_s, basis), _POOL_NAMES, strict=True):
            ratios = self._ratios.get(key, [])
            if len(ratios) >= MIN_RATIOS:
                return f"{what} ({len(ratios)})", np.array(ratios)
        return NO_HISTORY, np.zeros(0)


_POOL_NAMES = (
    "this job's replayed errors",
    "the user's errors at this basis",
    "everyone's errors at this basis",
)


def _pools(
    user: str | None, name: str | None, request_s: int | None, basis: str
) -> tuple[Hashable, ...]:
    return (("job", user, name, request_s), ("user", user, basis), ("basis", basis))


def replay(runs: Iterable[PastRun], until: float) -> ReplayedHistory:
    """The predictor and its errors from ``runs`` (any order; only those ended by ``until``
    are used)."""
    history = ReplayedHistory()
    for run in sorted(runs, key=lambda run: run.submit_s):
        if run.end_s <= until:
            history.submitted(run)
    history.advance(until)
    return history


def forecast_plan(
    plan: Sequence[PlannedJob],
    history: ReplayedHistory,
    *,
    as_of: datetime,
    seed: int = 0,
) -> CampaignForecast:
    """The plan's core- and GPU-hours from ``history`` (module docstring); ``seed`` fixes
    the simulation, so the same ledger gives the same answer."""
    if not plan:
        raise ForecastError("the plan holds no jobs to forecast")
    rng = np.random.default_rng(seed)
    total_core, total_gpu = np.zeros(DRAWS), np.zeros(DRAWS)
    extra_high_core = extra_high_gpu = 0.0
    point_core = point_gpu = 0.0
    stages, unsimulated = [], []
    quantiles: dict[str | None, Floats] = {}  # each user's quantile in every draw
    for job in plan:
        try:
            prediction = history.predictor.predict(job.user, job.name, job.request_s, job.cpus)
        except ForecastError:
            raise ForecastError(
                f"stage {job.label}: no walltime and no finished run of job {job.name!r} of "
                f"user {job.user!r} to predict its run time from; give it resources.walltime"
            ) from None
        errors, ratios = history.errors(job.user, job.name, job.request_s, prediction.basis)
        core_per_s, gpu_per_s = job.count * job.cpus / _HOUR, job.count * job.gpus / _HOUR
        if len(ratios):
            if job.user not in quantiles:
                quantiles[job.user] = rng.random(DRAWS)
            ranked = np.sort(ratios)
            runs = prediction.seconds * ranked[(quantiles[job.user] * len(ranked)).astype(int)]
            if job.request_s:
                runs = np.minimum(runs, job.request_s)
            seconds = float(runs.mean())
            low_s, high_s = (float(q) for q in np.quantile(runs, COVERAGE))
            total_core += core_per_s * runs
            total_gpu += gpu_per_s * runs
        else:  # no errors to resample: the prediction, bounded by nothing and the request
            seconds, low_s, high_s = float(prediction.seconds), 0.0, float(job.request_s or 0)
            extra_high_core += core_per_s * high_s
            extra_high_gpu += gpu_per_s * high_s
            unsimulated.append(job.label)
        point_core += core_per_s * seconds
        point_gpu += gpu_per_s * seconds
        stages.append(
            StageForecast(
                label=job.label,
                count=job.count,
                cpus=job.cpus,
                gpus=job.gpus,
                request_s=job.request_s,
                predicted_s=prediction.seconds,
                basis=prediction.basis,
                runs=prediction.runs,
                errors=errors,
                ratios=len(ratios),
                core_hours=core_per_s * seconds,
                core_low=core_per_s * low_s,
                core_high=core_per_s * high_s,
                gpu_hours=gpu_per_s * seconds,
                gpu_low=gpu_per_s * low_s,
                gpu_high=gpu_per_s * high_s,
            )
        )
    core_low, core_high = (float(q) for q in np.quantile(total_core, COVERAGE))
    gpu_low, gpu_high = (float(q) for q in np.quantile(total_gpu, COVERAGE))
    note = None
    if unsimulated:
        note = (
            f"too little history for {len(unsimulated)} of {len(plan)} stage(s) "
            f"({', '.join(unsimulated[:5])}{', ...' if len(unsimulated) > 5 else ''}): "
            f"fewer than {MIN_RATIOS} replayed run-time errors in the ledger, so their "
            "interval runs from nothing to the whole request (their run time is still the "
            "predictor's: see each stage's basis)"
        )
    return CampaignForecast(
        stages=stages,
        core_hours=point_core,
        core_low=core_low,
        core_high=core_high + extra_high_core,
        gpu_hours=point_gpu,
        gpu_low=gpu_low,
        gpu_high=gpu_high + extra_high_gpu,
        replayed=history.replayed,
        as_of=as_of,
        note=note,
        unsimulated=unsimulated,
    )


def forecast_campaign(
    ledger: Ledger, plan: Sequence[PlannedJob], *, as_of: datetime | None = None
) -> CampaignForecast:
    """The plan's core- and GPU-hours from the ledger's runs that ended by ``as_of`` (default
    now): everyone's last REPLAY_RUNS and each planned user's last USER_RUNS."""
    moment = as_of or datetime.now(UTC)
    users = sorted({job.user for job in plan if job.user is not None})
    runs = past_runs(ledger, users, moment)
    return forecast_plan(plan, replay(runs, moment.timestamp()), as_of=moment)


def past_runs(ledger: Ledger, users: Sequence[str], as_of: datetime) -> list[PastRun]:
    """Runs that started and ended by ``as_of``: everyone's most recent and the users' own."""
    from sqlalchemy import select

    from hpcbridge.ledger.schema import JobAttempt, User

    attempts = JobAttempt.__table__
    ended = (
        select(
            attempts.c.id,
            attempts.c.submit_at,
            attempts.c.start_at,
            attempts.c.end_at,
            attempts.c.elapsed_s,
            attempts.c.state,
            attempts.c.name,
            attempts.c.req_walltime_s,
            attempts.c.alloc_cpus,
            User.name.label("user_name"),
        )
        .join(User, User.id == attempts.c.user_id)
        .where(attempts.c.end_at <= as_of, attempts.c.start_at.is_not(None))
        .order_by(attempts.c.end_at.desc())
    )
    with ledger.transaction(read_only=True) as connection:
        rows = {row.id: row for row in connection.execute(ended.limit(REPLAY_RUNS))}
        for user in users:
            mine = ended.where(User.name == user).limit(USER_RUNS)
            rows.update({row.id: row for row in connection.execute(mine)})
    learnt = {state.value for state in FINISHED_STATES}
    runs = []
    for row in rows.values():
        # The run time the scheduler counted against the limit, else the time on the wall.
        wall = (row.end_at - row.start_at).total_seconds()
        runtime = row.elapsed_s if row.elapsed_s is not None else max(0, int(wall))
        submitted = row.submit_at or row.start_at
        runs.append(
            PastRun(
                submitted.timestamp(),
                row.end_at.timestamp(),
                FinishedJob(row.user_name, row.name, row.req_walltime_s, runtime, row.alloc_cpus),
                row.state in learnt,
            )
        )
    return runs
