"""Runtime prediction at submit time, and walltime advice, from a user's finished jobs.

Users ask for far more walltime than their jobs use, and the scheduler can only backfill a
job into a gap as long as its *request*. The best guide to a job's run time is how long the
same user's same kind of job ran lately (Tsafrir, Etsion and Feitelson, "Backfilling using
system-generated predictions rather than user runtime estimates", 2007), so a prediction is
the median of the last RECENT runs that match it, most specific match first:

1. the same user, job name, requested walltime and processors (a job's size changes its
   run time: a scaling study asks for the same walltime at each size);
2. the same user, job name and requested walltime, at any size;
3. the same user: the median of the last RECENT runs' used share of their request, times
   this request (a user's habit of over-asking carries across job types better than their
   run times do);
4. anyone: the median used share of the last GLOBAL_RECENT finished jobs, times the request.

Every prediction is capped at the request, which the scheduler enforces. RECENT = 3 is the
smallest window with a median that ignores one odd run; not fitted to any trace. History
holds only jobs that had *ended* before the new job's submission; :class:`RuntimeHistory`
is fed in end order and asked in submit order, by the ledger API and by the harness alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from statistics import median

from hpcbridge.errors import ForecastError
from hpcbridge.jobs.state import JobState

FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.TIMEOUT})
"""Runs whose length says how long such a job takes (a timed-out one: at least its request);
a failed or cancelled run says nothing about it."""
RECENT = 3
GLOBAL_RECENT = 1000
DEFAULT_SHARE = 0.5
"""The used share of the request assumed before any job has finished anywhere."""


@dataclass(frozen=True)
class FinishedJob:
    """What a finished job tells the predictor."""

    user: str | None
    name: str | None
    request_s: int | None
    runtime_s: int
    cpus: int | None = None  # processors it ran on; None: not known


@dataclass(frozen=True)
class RuntimePrediction:
    """A predicted run time and which history it came from (``basis``)."""

    seconds: int
    basis: str  # "same job and size", "same job", "user's share of request", "everyone's share"
    runs: int  # how many finished runs it rests on


class RuntimeHistory:
    """Recent finished runs per key, bounded: RECENT per key, GLOBAL_RECENT overall."""

    def __init__(self) -> None:
        self._runs: dict[Hashable, deque[int]] = {}
        self._shares: dict[Hashable, deque[float]] = {}
        self._everyone: deque[float] = deque(maxlen=GLOBAL_RECENT)

    def add(self, job: FinishedJob) -> None:
        """Record a job that has ended; call in order of end time."""
        keys: list[Hashable] = [(job.user, job.name, job.request_s)]
        if job.cpus is not None:
            keys.append((job.user, job.name, job.request_s, job.cpus))
        for key in keys:
            self._runs.setdefault(key, deque(maxlen=RECENT)).append(job.runtime_s)
        if job.request_s:
            share = min(1.0, job.runtime_s / job.request_s)
            self._shares.setdefault(job.user, deque(maxlen=RECENT)).append(share)
            self._everyone.append(share)

    def recent_runs(self, user: str | None, name: str | None, request_s: int | None) -> list[int]:
        """The last RECENT run times of the same user, job name and request, oldest first."""
        return list(self._runs.get((user, name, request_s), ()))

    def predict(
        self, user: str | None, name: str | None, request_s: int | None, cpus: int | None = None
    ) -> RuntimePrediction:
        """The run time to expect of a job submitted now on ``cpus`` processors (None: not
        known, so any size matches; see the module docstring)."""
        sized = self._runs.get((user, name, request_s, cpus)) if cpus is not None else None
        if sized:
            return _capped(median(sized), request_s, "same job and size", len(sized))
        runs = self._runs.get((user, name, request_s))
        if runs:
            return _capped(median(runs), request_s, "same job", len(runs))
        shares = self._shares.get(user)
        if request_s and shares:
            return _capped(
                median(shares) * request_s, request_s, "user's share of request", len(shares)
            )
        if request_s:
            share = median(self._everyone) if self._everyone else DEFAULT_SHARE
            return _capped(share * request_s, request_s, "everyone's share", len(self._everyone))
        raise ForecastError(
            f"no walltime requested and no finished run of job {name!r} of user {user!r} "
            "to predict from"
        )


def _capped(seconds: float, request_s: int | None, basis: str, runs: int) -> RuntimePrediction:
    limit = request_s if request_s else seconds
    return RuntimePrediction(max(1, round(min(seconds, limit))), basis, runs)
