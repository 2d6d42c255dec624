"""Runtime prediction and walltime advice: what history it uses, and what it says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.errors import ForecastError
from hpcbridge.forecast.advice import advise_walltime
from hpcbridge.forecast.evaluate import evaluate, read_trace
from hpcbridge.forecast.runtime import DEFAULT_SHARE, FinishedJob, RuntimeHistory
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.store import Ledger

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = 3600


def run(
    job_id: str,
    start_h: float,
    hours: float,
    *,
    user: str = "alice",
    name: str = "sim",
    elapsed_h: float | None = None,
) -> AttemptRecord:
    start = T0 + timedelta(hours=start_h)
    return AttemptRecord(
        job_id=job_id,
        attempt=1,
        state=JobState.COMPLETED,
        user=user,
        account="physics",
        name=name,
        submit=start,
        start=start,
        end=start + timedelta(hours=hours),
        elapsed_s=None if elapsed_h is None else int(elapsed_h * HOUR),
        alloc_cpus=4,
        req_walltime_s=12 * HOUR,
    )


def test_history_prefers_the_same_job_then_the_users_share_then_everyones() -> None:
    history = RuntimeHistory()
    assert history.predict("alice", "sim", 1000).seconds == 1000 * DEFAULT_SHARE
    history.add(FinishedJob("bob", "x", 1000, 100))
    assert history.predict("alice", "sim", 2000).basis == "everyone's share"
    assert history.predict("alice", "sim", 2000).seconds == 200
    for runtime in (300, 500, 400, 9000):
        history.add(FinishedJob("alice", "sim", 10_000, runtime))
    same = history.predict("alice", "sim", 10_000)
    assert (same.seconds, same.basis, same.runs) == (500, "same job", 3)  # last 3: 500 400 9000
    other = history.predict("alice", "post", 1000)
    assert other.basis == "user's share of request"
    assert other.seconds == 50  # the median share of the last three, 0.05, of 1000
    capped = RuntimeHistory()
    capped.add(FinishedJob("alice", "sim", 10_000, 9000))
    assert capped.predict("alice", "sim", 10_000).seconds == 9000
    with pytest.raises(ForecastError, match="no walltime requested"):
        RuntimeHistory().predict("alice", "sim", None)


def test_the_same_job_at_the_same_size_comes_first() -> None:
    history = RuntimeHistory()
    for cpus, runtime in ((64, 1000), (16, 4000), (64, 1200), (16, 4400), (64, 1100)):
        history.add(FinishedJob("alice", "sim", 10_000, runtime, cpus))  # a scaling study
    sized = history.predict("alice", "sim", 10_000, 64)
    assert (sized.seconds, sized.basis, sized.runs) == (1100, "same job and size", 3)
    assert history.predict("alice", "sim", 10_000, 16).seconds == 4200  # median of 4000, 4400
    unseen = history.predict("alice", "sim", 10_000, 32)  # a size not run yet: any size
    assert (unseen.seconds, unseen.basis) == (1200, "same job")  # last 3: 1200 4400 1100
    assert history.predict("alice", "sim", 10_000).basis == "same job"  # size not given


def test_advice_uses_only_jobs_that_ended_before_submission(ledger: Ledger) -> None:
    ledger.upsert_attempts(
        "c",
        "slurm",
        [run("1", 0, 2), run("2", 10, 2), run("3", 20, 2), run("4", 30, 11.5)],
        source="t",
    )
    # At hour 35 the 11.5-hour job is still running: only the three 2-hour runs count.
    early = advise_walltime(
        ledger, user="alice", name="sim", request_s=12 * HOUR, as_of=T0 + timedelta(hours=35)
    )
    assert early.prediction.seconds == 2 * HOUR
    assert early.prediction.runs == 3
    assert early.suggested_s == 3 * HOUR  # 1.5 x the longest run
    assert early.text == (
        "your jobs use 17% of the walltime they request: asking for 3 h instead of 12 h would "
        "let the scheduler backfill them sooner (expected run time 2 h, same job, from 3 "
        "finished run(s))"
    )
    late = advise_walltime(
        ledger, user="alice", name="sim", request_s=12 * HOUR, as_of=T0 + timedelta(hours=50)
    )
    assert late.prediction.seconds == 2 * HOUR  # median of 2, 2, 11.5
    assert late.suggested_s is None  # 1.5 x 11.5 h is more than the request
    assert late.text.startswith("expected run time 2 h (same job)")


def test_advice_counts_the_run_time_the_scheduler_charged(ledger: Ledger) -> None:
    # Each run spent 6 h on the wall, 4 of them suspended: 2 h counted against the limit.
    suspended = [run(str(n), 10 * n, 6, elapsed_h=2) for n in range(3)]
    ledger.upsert_attempts("c", "slurm", suspended, source="t")
    advice = advise_walltime(
        ledger, user="alice", name="sim", request_s=12 * HOUR, as_of=T0 + timedelta(days=9)
    )
    assert (advice.prediction.seconds, advice.suggested_s) == (2 * HOUR, 3 * HOUR)


def test_advise_command(ledger_url: str, tmp_path: Path) -> None:
    with Ledger.open(ledger_url) as opened:
        opened.upsert_attempts("c", "slurm", [run(str(i), 3 * i, 1) for i in range(3)], source="t")
    job = tmp_path / "job.yaml"
    job.write_text("name: sim\ncommand: ./sim\nresources:\n  walltime: '12:00:00'\n")
    runner = CliRunner()
    text = runner.invoke(main, ["advise", str(job), "--user", "alice", "--ledger", ledger_url])
    assert text.exit_code == 0, text.output
    assert "asking for 1.5 h instead of 12 h" in text.output
    data = runner.invoke(
        main, ["advise", str(job), "--user", "alice", "--ledger", ledger_url, "--json"]
    )
    assert json.loads(data.output)["suggested_s"] == 5400
    job.write_text("name: sim\ncommand: ./sim\n")
    unknown = runner.invoke(main, ["advise", str(job), "--user", "carol", "--ledger", ledger_url])
    assert unknown.exit_code == 9
    assert "no walltime requested" in unknown.output


def test_harness_predicts_each_job_only_from_runs_ended_before_its_submission(
    tmp_path: Path,
) -> None:
    # Job 2 is submitted while job 1 (which used all of its request) still runs. Seeing job 1
    # would predict all of job 2's request (4000 s); not seeing it, half (the default share).
    trace = tmp_path / "t.swf"
    trace.write_text(
        "; UnixStartTime: 1700000000\n"
        "1 0 0 1000 1 -1 -1 1 1000 -1 1 7 1 -1 1 -1 -1 -1\n"
        "2 500 0 2000 1 -1 -1 1 4000 -1 1 7 1 -1 1 -1 -1 -1\n"
        # Failed jobs (neither scored nor learnt from) give the trace its months of usage.
        + "".join(
            f"{3 + day} {day * 86400} 0 3600 1 -1 -1 1 3600 -1 0 8 2 -1 1 -1 -1 -1\n"
            for day in range(0, 200, 5)
        )
    )
    runtime = {s.method: s for s in evaluate(read_trace(trace)).runtime}
    assert runtime["model"].median_ape == pytest.approx((0.5 + 0.0) / 2)
    assert runtime["model"].under_predicted == pytest.approx(0.5)
    assert runtime["model"].over_predicted == 0.0
    assert runtime["requested walltime"].over_predicted == pytest.approx(0.5)  # 4000 s for 2000
    assert runtime["last two"].median_ape == pytest.approx((0.0 + 1.0) / 2)  # request both times
