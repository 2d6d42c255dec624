"""The queue at an origin as demand already asked for: what it counts, and that nothing
after the origin can change it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcbridge.forecast.backlog import backlog

HOUR = 3600.0
ORIGIN = 1000 * HOUR
MONTH = 720 * HOUR
NAN = math.nan

# submit, start, end, cpus, request, group (hours around ORIGIN; NaN: unknown)
ENDED = (-50, -40, -30, 4, 20, 0)  # used 10 of 20 h requested: group 0's share is 0.5
QUEUED = (-5, 30, 32, 2, 10, 0)  # waiting at the origin: 10 h x 0.5 x 2 processors
RUNNING = (-10, -4, 2, 8, 10, 0)  # 6 h of its request left: 6 x 0.5 x 8
OTHER_GROUP_ENDED = (-60, -60, -59, 1, 4, 1)  # group 1 used a quarter of its request


def hours(*jobs: tuple[float, ...], groups: int = 2) -> list[float]:
    columns = np.array(jobs, dtype=float).T
    submit, start, end = (column * HOUR + ORIGIN for column in columns[:3])
    figure = backlog(
        submit=submit,
        start=start,
        end=end,
        cpus=columns[3],
        request=columns[4] * HOUR,
        group=columns[5].astype(np.int64),
        groups=groups,
        origin=ORIGIN,
        month_s=MONTH,
    )
    return [round(value, 6) for value in figure.tolist()]


def test_queued_and_running_jobs_count_at_the_share_of_their_requests_used() -> None:
    assert hours(ENDED, QUEUED, RUNNING, OTHER_GROUP_ENDED) == [10.0 + 24.0, 0.0]


def test_a_group_with_no_finished_job_takes_the_site_share() -> None:
    waiting = (-1, 5, 6, 1, 40, 2)  # group 2's first job; the site used 41 of 84 h asked
    figure = hours(ENDED, OTHER_GROUP_ENDED, waiting, groups=3)
    assert figure == [0.0, 0.0, round(40 * 41 / 84, 6)]


def test_a_request_longer_than_the_month_counts_the_month_at_most() -> None:
    huge = (-1, 5, 6, 1, 10_000, 0)
    assert hours(ENDED, huge) == [720.0, 0.0]  # min(10,000 x 0.5, 720) x 1 processor


def test_nothing_known_only_after_the_origin_changes_the_figure() -> None:
    before = hours(ENDED, QUEUED, RUNNING)
    submitted_later = (1, 2, 50, 64, 100, 0)
    assert hours(ENDED, QUEUED, RUNNING, submitted_later) == before
    # The queued job's fate: starting later, ending sooner, or cancelled in the queue.
    for fate in ((-5, 300, 900, 2, 10, 0), (-5, 1, 1.5, 2, 10, 0), (-5, 7, 7, 2, 10, 0)):
        assert hours(ENDED, fate, RUNNING) == before
    overrun = (-10, -4, 500, 8, 10, 0)  # the running job, killed long after: same figure
    assert hours(ENDED, QUEUED, overrun) == before


@pytest.mark.parametrize(
    "unknown",
    [(-5, NAN, NAN, 2, 10, 0), (-5, 30, 32, 2, NAN, 0)],
    ids=["start unknown", "no request"],
)
def test_jobs_whose_queueing_or_request_is_unknown_are_not_counted(
    unknown: tuple[float, ...],
) -> None:
    assert hours(ENDED, unknown) == [0.0, 0.0]
