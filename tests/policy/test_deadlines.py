"""The deadline rule without a scheduler: remaining work at the account's pace, slack, the
level each step gives, and which level a QOS and nice stand
for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hpcbridge.forecast.runtime import FinishedJob, RuntimeHistory
from hpcbridge.policy.deadlines import Deadline, account_slack
from hpcbridge.policy.queue import QueuedJob
from hpcbridge.site import PriorityOptions

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
LEVELS = {
    "low": {"qos": "normal", "nice": 1000},
    "normal": {"qos": "normal", "nice": 0},
    "high": {"qos": "high", "nice": 0},
    "critical": {"qos": "high", "nice": -100},
}
STEPS = [{"slack_below": "2-00:00:00", "level": "high"}, {"slack_below": "0", "level": "critical"}]
OPTIONS = PriorityOptions.model_validate({"levels": LEVELS, "deadline_steps": STEPS})


def job(job_id: str, *, cores: int, limit_h: float, running_h: float | None = None) -> QueuedJob:
    limit = int(limit_h * 3600)
    used = int((running_h or 0) * 3600)
    return QueuedJob(
        job_id=job_id,
        account="physics",
        user="ana",
        running=running_h is not None,
        reason=None,
        cores=cores,
        gpus=0,
        seconds_left=limit - used,
        name="sim",
        limit_s=limit,
        used_s=used,
        qos="normal",
        nice=0,
    )


def history_of_half_runs() -> RuntimeHistory:
    """ana's last runs of "sim" used half of a 10 h request: 5 h is the prediction."""
    history = RuntimeHistory()
    for _ in range(3):
        history.add(FinishedJob("ana", "sim", 36_000, 18_000))
    return history


def slack_for(jobs: list[QueuedJob], due_in: timedelta) -> tuple[int, int, str | None]:
    deadline = Deadline("physics", NOW + due_in, "ledger")
    slack = account_slack(
        "physics",
        deadline,
        jobs,
        histories={"ana": history_of_half_runs()},
        options=OPTIONS,
        now=NOW,
    )
    assert slack.slack_s == slack.time_left_s - slack.remaining_s
    return slack.remaining_s, slack.slack_s, slack.level


def test_remaining_work_runs_at_the_pace_of_the_cores_the_account_holds_now() -> None:
    # Running: 8 cores, 2 h into a 5 h prediction -> 3 h x 8 cores. Queued: two 4-core jobs
    # of 5 h -> 40 core-hours. 64 core-hours over the 8 cores running: 8 h.
    jobs = [
        job("1", cores=8, limit_h=10, running_h=2),
        job("2", cores=4, limit_h=10),
        job("3", cores=4, limit_h=10),
    ]
    remaining, _, _ = slack_for(jobs, timedelta(days=10))
    assert remaining == 8 * 3600


def test_with_nothing_running_the_widest_job_sets_the_pace_and_no_job_is_shorter_than_itself() -> (
    None
):
    # 16 cores x 5 h + 1 core x 5 h over 16 cores = 5.3 h; the longest job alone is 5 h.
    jobs = [job("1", cores=16, limit_h=10), job("2", cores=1, limit_h=10)]
    remaining, _, _ = slack_for(jobs, timedelta(days=10))
    assert remaining == round(17 * 5 * 3600 / 16)
    alone = [job("1", cores=1, limit_h=10)]
    assert slack_for(alone, timedelta(days=10))[0] == 5 * 3600


@pytest.mark.parametrize(
    ("due_in", "level"),
    [
        (timedelta(days=3), None),  # slack 3 d - 5 h: above both steps
        (timedelta(days=2), "high"),  # slack 2 d - 5 h < 2 d
        (timedelta(hours=5), "high"),  # slack 0: not below 0
        (timedelta(hours=4), "critical"),  # slack -1 h
        (-timedelta(hours=1), "critical"),  # past due
    ],
)
def test_the_highest_step_the_slack_is_under_gives_the_level(
    due_in: timedelta, level: str | None
) -> None:
    assert slack_for([job("1", cores=1, limit_h=10)], due_in)[2] == level


def test_without_steps_the_highest_level_comes_a_day_before_the_work_must_start() -> None:
    options = PriorityOptions.model_validate({"levels": LEVELS})
    [step] = options.steps()
    assert (step.slack_below, step.level) == (86_400, "critical")
    assert PriorityOptions().steps() == []


def test_the_level_a_qos_and_nice_stand_for_is_the_most_specific_match() -> None:
    assert OPTIONS.level_of("normal", 1000) == "low"
    assert OPTIONS.level_of("normal", 0) == "normal"
    assert OPTIONS.level_of("high", -100) == "critical"
    assert OPTIONS.level_of("scavenger", 0) is None
    nice_only = PriorityOptions.model_validate(
        {"levels": {"low": {"nice": 500}, "any": {}, "high": {"nice": -500}}}
    )
    assert nice_only.level_of(None, -500) == "high"
    assert nice_only.level_of(None, 7) == "any"


def test_a_job_with_neither_limit_nor_history_is_named_not_guessed() -> None:
    blind = QueuedJob("9", "physics", "bob", False, None, 1, 0, None, name="x")
    slack = account_slack(
        "physics",
        Deadline("physics", NOW + timedelta(days=1), "site"),
        [blind, job("1", cores=1, limit_h=10)],
        histories={"bob": RuntimeHistory(), "ana": history_of_half_runs()},
        options=OPTIONS,
        now=NOW,
    )
    assert slack.unpredicted == ["9"]
    assert slack.remaining_s == 5 * 3600
