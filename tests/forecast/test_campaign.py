"""Campaign forecasts: the predictor's replayed errors, the interval of a sum, the ledger API
(on SQLite and PostgreSQL) and ``hpcbridge forecast workflow``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.errors import ForecastError
from hpcbridge.forecast.campaign import (
    MIN_RATIOS,
    NO_HISTORY,
    CampaignForecast,
    PastRun,
    PlannedJob,
    forecast_campaign,
    forecast_plan,
    replay,
)
from hpcbridge.forecast.runtime import FinishedJob
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.store import Ledger

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = 3600
REQUEST = 10 * HOUR
# Run times of alice's job "sim": 1 to 3 hours, in a pattern that repeats.
PATTERN = (1.0, 2.0, 3.0, 1.5, 2.5, 1.2, 2.8)


def past(count: int, *, user: str = "alice", name: str = "sim") -> list[PastRun]:
    """``count`` runs of the job, one every 4 hours, each ending before the next starts."""
    return [
        PastRun(
            submit_s=T0.timestamp() + 4 * HOUR * n,
            end_s=T0.timestamp() + 4 * HOUR * n + PATTERN[n % len(PATTERN)] * HOUR,
            job=FinishedJob(user, name, REQUEST, int(PATTERN[n % len(PATTERN)] * HOUR), 4),
            learnt=True,
        )
        for n in range(count)
    ]


def plan(count: int = 10) -> list[PlannedJob]:
    return [PlannedJob("sim", "alice", "sim", REQUEST, cpus=4, gpus=1, count=count)]


def forecast_after(runs: list[PastRun], jobs: list[PlannedJob]) -> CampaignForecast:
    until = max(run.end_s for run in runs) + HOUR
    return forecast_plan(jobs, replay(runs, until), as_of=datetime.fromtimestamp(until, UTC))


def test_a_job_with_its_own_history_uses_its_own_replayed_errors() -> None:
    result = forecast_after(past(60), plan(10))
    (stage,) = result.stages
    assert stage.basis == "same job and size"
    assert stage.errors.startswith("this job's replayed errors")
    assert stage.ratios >= MIN_RATIOS
    # 10 jobs x 4 cores of 1-3 hours each (a predictor that errs up to 3x either way).
    assert 40 < result.core_hours < 120
    assert 0 < result.core_low < result.core_hours < result.core_high < 10 * 4 * REQUEST / HOUR
    assert result.gpu_hours == pytest.approx(result.core_hours / 4)
    assert result.gpu_low <= result.gpu_hours <= result.gpu_high
    assert (stage.core_hours, stage.core_low, stage.core_high) == (
        result.core_hours,
        result.core_low,
        result.core_high,
    )
    assert result.note is None
    assert result.unsimulated == []


def test_the_interval_widens_with_less_history() -> None:
    widths = []
    for runs in (60, 5):
        result = forecast_after(past(runs), plan())
        assert result.core_low <= result.core_hours <= result.core_high
        widths.append((result.core_high - result.core_low) / result.core_hours)
    assert widths[0] < widths[1]
    few = forecast_after(past(5), plan())
    assert few.unsimulated == ["sim"]
    assert few.stages[0].errors == NO_HISTORY
    assert (few.core_low, few.core_high) == (0.0, 10 * 4 * REQUEST / HOUR)
    assert few.note is not None
    assert "too little history for 1 of 1 stage(s) (sim)" in few.note


def test_a_run_never_counts_beyond_its_walltime() -> None:
    runs = past(60)
    # Predicted a tenth of what they ran: drawn ratios of 10 would pass the request.
    longer = [
        PastRun(r.submit_s, r.end_s, FinishedJob("bob", "big", REQUEST, 9 * HOUR, 4), True)
        for r in runs
    ]
    short = [
        PastRun(r.submit_s, r.end_s, FinishedJob("bob", "big", REQUEST, 1, 4), True) for r in runs
    ]
    mixed = [run for pair in zip(short, longer, strict=True) for run in pair]
    result = forecast_after(mixed, [PlannedJob("big", "bob", "big", REQUEST, cpus=4, count=3)])
    assert result.core_high <= 3 * 4 * REQUEST / HOUR


def test_stages_of_one_user_err_together_and_sum() -> None:
    runs = past(60) + past(60, name="post")
    jobs = [
        PlannedJob("sim", "alice", "sim", REQUEST, cpus=4, count=10),
        PlannedJob("post", "alice", "post", REQUEST, cpus=1, count=2),
    ]
    result = forecast_after(runs, jobs)
    assert result.core_hours == pytest.approx(sum(s.core_hours for s in result.stages))
    # One user's stages draw at the same quantile: the total's bounds are the stages' summed.
    assert result.core_low == pytest.approx(sum(s.core_low for s in result.stages), rel=0.02)
    assert result.core_high == pytest.approx(sum(s.core_high for s in result.stages), rel=0.02)


def test_only_runs_ended_by_the_plan_are_replayed() -> None:
    runs = past(30)
    until = runs[-1].end_s - 1  # the last run is still going
    history = replay(runs, until)
    assert history.replayed == 29
    assert history.predictor.recent_runs("alice", "sim", REQUEST)[-1] == runs[-2].job.runtime_s


def test_a_plan_needs_jobs_and_walltimes() -> None:
    with pytest.raises(ForecastError, match="no jobs"):
        forecast_after(past(3), [])
    with pytest.raises(ForecastError, match="stage new: no walltime"):
        forecast_after(past(3), [PlannedJob("new", "alice", "new", None, cpus=1)])


def attempt(
    n: int, state: JobState = JobState.COMPLETED, hours: float | None = None
) -> AttemptRecord:
    start = T0 + timedelta(hours=4 * n)
    length = PATTERN[n % len(PATTERN)] if hours is None else hours
    return AttemptRecord(
        job_id=str(n),
        attempt=1,
        state=state,
        user="alice",
        account="physics",
        name="demo.compute",
        submit=start,
        start=start,
        end=start + timedelta(hours=length),
        alloc_cpus=16,
        req_walltime_s=2 * HOUR * 5,
    )


def test_forecast_from_the_ledger(ledger: Ledger) -> None:
    records = [attempt(n) for n in range(40)] + [attempt(40, JobState.FAILED, 0.1)]
    ledger.upsert_attempts("c", "slurm", records, source="t")
    jobs = [PlannedJob("compute", "alice", "demo.compute", REQUEST, cpus=16, count=5)]
    as_of = T0 + timedelta(days=30)
    result = forecast_campaign(ledger, jobs, as_of=as_of)
    assert result.replayed == 41  # the failed run's error counts too
    assert result.stages[0].basis == "same job and size"
    assert result.core_low <= result.core_hours <= result.core_high
    earlier = forecast_campaign(ledger, jobs, as_of=T0 + timedelta(hours=10))
    assert earlier.replayed == 2  # the third run was still going
    assert earlier.unsimulated == ["compute"]


WORKFLOW = """\
name: demo
stages:
  - {name: prepare, command: make, resources: {walltime: "10:00", cpus_per_task: 2}}
  - name: compute
    command: ./sim
    depends_on: prepare
    array: 1-20
    resources: {walltime: "10:00:00", ntasks: 16}
  - {name: report, command: ./plot, depends_on: compute, resources: {walltime: "30:00", gpus: 1}}
"""


def test_forecast_workflow_command(ledger_url: str, tmp_path: Path) -> None:
    with Ledger.open(ledger_url) as opened:
        opened.upsert_attempts("c", "slurm", [attempt(n) for n in range(40)], source="t")
    workflow = tmp_path / "demo.yaml"
    workflow.write_text(WORKFLOW)
    runner = CliRunner()
    common = ["--user", "alice", "--ledger", ledger_url, "--as-of", "2024-04-01"]
    shown = runner.invoke(main, ["forecast", "workflow", str(workflow), "--json", *common])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    stages = {stage["label"]: stage for stage in data["stages"]}
    assert (stages["compute"]["count"], stages["compute"]["cpus"]) == (20, 16)
    assert stages["compute"]["basis"] == "same job and size"  # demo.compute's runs
    assert stages["report"]["gpus"] == 1
    assert data["core_low"] <= data["core_hours"] <= data["core_high"]
    assert sorted(data["unsimulated"]) == ["prepare", "report"]  # no runs of theirs, or others'
    text = runner.invoke(main, ["forecast", "workflow", str(workflow), *common])
    assert text.exit_code == 0, text.output
    assert "\ntotal " in text.output
    assert "too little history for 2 of 3 stage(s)" in text.output


def test_forecast_workflow_of_a_sweep_and_bad_input(ledger_url: str, tmp_path: Path) -> None:
    Ledger.open(ledger_url).close()
    job = tmp_path / "job.yaml"
    job.write_text("name: sim\ncommand: ./sim\narray: 1-4\nresources: {walltime: '2:00:00'}\n")
    sweep = tmp_path / "rows.csv"
    sweep.write_text("SEED\n1\n2\n3\n")
    runner = CliRunner()
    base = ["forecast", "workflow", "--ledger", ledger_url, "--json"]
    result = runner.invoke(main, [*base, str(job), "--sweep", str(sweep)])
    assert result.exit_code == 0, result.output
    (stage,) = json.loads(result.output)["stages"]
    assert stage["count"] == 12  # 4 array tasks for each of 3 rows
    assert stage["basis"] == "everyone's share"  # an empty ledger: half the request
    assert stage["core_high"] == 24.0  # nothing known: up to the whole request
    workflow = tmp_path / "demo.yaml"
    workflow.write_text(WORKFLOW)
    refused = runner.invoke(main, [*base, str(workflow), "--sweep", str(sweep)])
    assert refused.exit_code == 3
    assert "--sweep: " in refused.output
    assert "demo.yaml is a workflow" in refused.output
    job.write_text("name: sim\ncommand: ./sim\nresources: {walltime: '0:00:00'}\n")
    invalid = runner.invoke(main, [*base, str(job)])
    assert invalid.exit_code == 3
    assert "resources.walltime" in invalid.output
