"""The queue at an origin: the part of next month's usage that has already been asked for.

At the start of a month some work is known to be coming: jobs submitted and still waiting,
and jobs running with time left on their request. Each is counted at what the group's
finished jobs used of what they requested (their used share, site-wide where the group has
no finished job with a request), because a request is an upper bound that most jobs stop
well short of, and jobs cancelled in the queue (used 0) lower that share as they lower
what the queue turns into:

- a queued job: request x share, at most the month, times its processors;
- a running job: (request - time it has run) x share, at most the month, times its
  processors.

Everything read is known at the origin: that a job was submitted and had not started (or
had started and not ended) by then, its request and processors, and the jobs that had
ended. When a waiting job will start, whether it will be cancelled and how long it will
run are not read, so a job submitted after the origin, or the fate of one queued at it,
cannot change the figure.
"""

from __future__ import annotations

from hpcbridge.forecast.arrays import Floats, Ints, np


def backlog(
    *,
    submit: Floats,
    start: Floats,
    end: Floats,
    cpus: Floats,
    request: Floats,
    group: Ints,
    groups: int,
    origin: float,
    month_s: float,
) -> Floats:
    """Core-hours per group (rows 0 .. groups - 1) that the jobs queued or running at
    ``origin`` (epoch seconds) are expected to use in the ``month_s`` seconds after it.

    Times are epoch seconds, NaN where unknown (a job whose start is unknown is not known
    to have been waiting); ``request`` is the requested walltime in seconds, NaN where the
    job gave none (such a job cannot be counted).
    """
    asked = ~np.isnan(request)
    # NaN compares False: a job with an unknown start is neither queued nor running.
    queued = asked & (submit <= origin) & (start > origin)
    running = asked & (start <= origin) & (end > origin)
    ended = asked & (end <= origin)
    share = _used_share(
        start=start[ended],
        end=end[ended],
        cpus=cpus[ended],
        request=request[ended],
        group=group[ended],
        groups=groups,
    )
    left = np.where(queued, request, request - (origin - start))
    expected = np.clip(left * share[group], 0.0, month_s) * cpus
    counted = queued | running
    hours: Floats = np.bincount(group[counted], weights=expected[counted], minlength=groups) / 3600
    return hours


def _used_share(
    *, start: Floats, end: Floats, cpus: Floats, request: Floats, group: Ints, groups: int
) -> Floats:
    """Each group's used / requested processor-seconds over ended jobs; the site's where a
    group has none, and 1 (the request itself) where the site has none either."""
    used = np.bincount(group, weights=(end - start) * cpus, minlength=groups)
    requested = np.bincount(group, weights=request * cpus, minlength=groups)
    site = used.sum() / requested.sum() if requested.sum() > 0 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        share: Floats = np.where(requested > 0, used / requested, site)
    return share
