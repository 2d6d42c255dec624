"""Walltime advice for a job about to be submitted, from the ledger's finished jobs.

The prediction is :class:`~hpcbridge.forecast.runtime.RuntimeHistory`'s, fed from the ledger
with the jobs that ended by ``as_of``. The suggested walltime is not the prediction: half
of all jobs run longer than a median, and a job asking for its median would be killed half
the time. It is HEADROOM times the longest of the recent matching runs (or of the
prediction), rounded up to a quarter hour and never above the request; advice is given only
when that saves at least a quarter of the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from hpcbridge.forecast.runtime import (
    FINISHED_STATES,
    GLOBAL_RECENT,
    FinishedJob,
    RuntimeHistory,
    RuntimePrediction,
)
from hpcbridge.ledger.schema import JobAttempt, User
from hpcbridge.ledger.store import Ledger

HEADROOM = 1.5
_QUARTER_HOUR = 900
_WORTH_ADVISING = 0.75  # suggest a walltime only below this share of the request
_USER_RUNS = 500  # a user's most recent finished runs read from the ledger


@dataclass(frozen=True)
class WalltimeAdvice:
    """The predicted run time of a job, and a shorter walltime to ask for where it helps."""

    prediction: RuntimePrediction
    requested_s: int | None
    used_share: float | None  # of the request, by the prediction
    suggested_s: int | None  # None: keep the request
    text: str


def advise_walltime(
    ledger: Ledger,
    *,
    user: str,
    name: str | None,
    request_s: int | None,
    cpus: int | None = None,
    as_of: datetime | None = None,
) -> WalltimeAdvice:
    """Predict the run time of ``user``'s job ``name`` asking for ``request_s`` seconds on
    ``cpus`` processors (None: any size)."""
    history = runtime_history(ledger, user=user, as_of=as_of)
    prediction = history.predict(user, name, request_s, cpus)
    longest = max(history.recent_runs(user, name, request_s), default=prediction.seconds)
    suggested = math.ceil(HEADROOM * longest / _QUARTER_HOUR) * _QUARTER_HOUR
    share = prediction.seconds / request_s if request_s else None
    if request_s is None or suggested > _WORTH_ADVISING * request_s:
        text = f"expected run time {_hours(prediction.seconds)} ({prediction.basis})"
        if share is not None:
            text += f"; your request of {_hours(request_s or 0)} fits it"
        return WalltimeAdvice(prediction, request_s, share, None, text)
    text = (
        f"your jobs use {share:.0%} of the walltime they request: asking for "
        f"{_hours(suggested)} instead of {_hours(request_s)} would let the scheduler backfill "
        f"them sooner (expected run time {_hours(prediction.seconds)}, {prediction.basis}, "
        f"from {prediction.runs} finished run(s))"
    )
    return WalltimeAdvice(prediction, request_s, share, suggested, text)


def runtime_history(ledger: Ledger, *, user: str, as_of: datetime | None = None) -> RuntimeHistory:
    """The predictor fed with ``user``'s recent and everyone's most recent finished runs that
    ended by ``as_of`` (default now): one read of the ledger for any number of predictions."""
    history = RuntimeHistory()
    for job in _finished_jobs(ledger, user, as_of or datetime.now(UTC)):
        history.add(job)
    return history


def _finished_jobs(ledger: Ledger, user: str, as_of: datetime) -> list[FinishedJob]:
    """The user's recent and everyone's most recent runs that ended by ``as_of``, in end order."""
    attempts = JobAttempt.__table__
    columns = (
        attempts.c.id,
        attempts.c.end_at,
        User.name.label("user_name"),
        attempts.c.name.label("job_name"),
        attempts.c.req_walltime_s,
        attempts.c.start_at,
        attempts.c.elapsed_s,
        attempts.c.alloc_cpus,
    )
    finished = (
        select(*columns)
        .join(User, User.id == attempts.c.user_id)
        .where(
            attempts.c.state.in_([state.value for state in FINISHED_STATES]),
            attempts.c.end_at <= as_of,
            attempts.c.start_at.is_not(None),
        )
        .order_by(attempts.c.end_at.desc())
    )
    with ledger.transaction(read_only=True) as connection:
        rows = {row.id: row for row in connection.execute(finished.limit(GLOBAL_RECENT))}
        mine = finished.where(User.name == user).limit(_USER_RUNS)
        rows.update({row.id: row for row in connection.execute(mine)})
    ordered = sorted(rows.values(), key=lambda row: (row.end_at, row.id))
    # The run time the scheduler counted against the limit (Slurm leaves suspended time out),
    # else the time on the wall.
    return [
        FinishedJob(
            row.user_name,
            row.job_name,
            row.req_walltime_s,
            row.elapsed_s
            if row.elapsed_s is not None
            else max(0, int((row.end_at - row.start_at).total_seconds())),
            row.alloc_cpus,
        )
        for row in ordered
    ]


def _hours(seconds: int) -> str:
    """A walltime as people say it: 2 h, 1.5 h, 45 min."""
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)} min"
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours == round(hours) else f"{hours:.1f} h"
