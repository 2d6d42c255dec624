"""Usage forecasts: series building at an origin, the model on synthetic series, the ledger
API (on SQLite and PostgreSQL), the burn-down dates, the CLI and the harness end to end.

Traces are SWF lines written here; the shared development trace is scored by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.errors import ForecastError
from hpcbridge.forecast.evaluate import month_bounds, read_trace
from hpcbridge.forecast.model import ALPHAS, forecast, level, median_ape
from hpcbridge.forecast.monthly import job_series, ledger_series
from hpcbridge.forecast.usage import budget_burndown, forecast_usage
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.sources.swf import SwfTrace, import_swf
from hpcbridge.ledger.store import Ledger

EPOCH = int(datetime(2024, 1, 15, tzinfo=UTC).timestamp())  # mid-January: a partial month
DAY = 86400


def swf(path: Path, jobs: list[tuple[int, int, int, int, int]]) -> Path:
    """An SWF file of (submit offset, run time, processors, user, group) jobs, no waits."""
    lines = [f"; UnixStartTime: {EPOCH}"]
    for number, (submit, run, procs, user, group) in enumerate(jobs, start=1):
        lines.append(
            f"{number} {submit} 0 {run} {procs} -1 -1 {procs} {2 * run} -1 1 {user} {group} "
            "-1 1 -1 -1 -1"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def at(month: int, day: int = 1, year: int = 2024) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def offset(moment: datetime) -> int:
    return int(moment.timestamp()) - EPOCH


# -- series building ---------------------------------------------------------------------


def test_series_split_pro_rata_clipped_at_origin_partial_months_dropped(tmp_path: Path) -> None:
    jobs = read_trace(
        swf(
            tmp_path / "t.swf",
            [
                (0, 3 * DAY, 1, 1, 1),  # Jan 15-18: January is partial, dropped
                (offset(at(1, 31)), 2 * DAY, 10, 1, 1),  # Jan 31 - Feb 2: one day in Feb
                (offset(at(3, 1)) - 3600, 7200, 36, 2, 2),  # an hour either side of Mar 1
                (offset(at(4, 10)), DAY, 1, 2, 2),  # last submission: April is partial
            ],
        )
    )
    bounds = month_bounds(jobs)
    assert [datetime.fromtimestamp(b, UTC) for b in bounds] == [at(2), at(3), at(4)]
    ran = ~np.isnan(jobs.start)
    full = job_series(
        jobs.start[ran],
        jobs.end[ran],
        jobs.cpus[ran],
        jobs.account[ran],
        groups=2,
        bounds=bounds,
        origin=bounds[-1],
    )
    assert full.tolist() == [[240.0, 0.0], [36.0, 36.0]]
    # At an origin half an hour into March the job across it counts only its first 90 min.
    origin = float(bounds[1]) + 1800
    clipped = job_series(
        jobs.start[ran],
        jobs.end[ran],
        jobs.cpus[ran],
        jobs.account[ran],
        groups=2,
        bounds=bounds,
        origin=origin,
    )
    assert clipped.tolist() == [[240.0, 0.0], [36.0, 18.0]]


def test_series_at_origin_ignores_what_happens_after_it(tmp_path: Path) -> None:
    base = [(0, DAY, 1, 1, 1)] + [(offset(at(m, 3)), 5 * DAY, 8, 1, 1) for m in (2, 3, 4)]
    base.append((offset(at(6, 10)), DAY, 1, 1, 1))  # months Feb .. May are whole
    origin_day = at(4, 20)
    running = offset(at(4, 19))
    before = [*base, (running, 2 * DAY, 4, 1, 1), (offset(at(4, 25)), DAY, 2, 1, 1)]
    after = [*base, (running, 40 * DAY, 4, 1, 1), (offset(at(4, 25)), 9 * DAY, 64, 1, 1)]

    def seen(jobs: list[tuple[int, int, int, int, int]], name: str) -> list[list[float]]:
        trace = read_trace(swf(tmp_path / name, jobs))
        ran = ~np.isnan(trace.start)
        series = job_series(
            trace.start[ran],
            trace.end[ran],
            trace.cpus[ran],
            trace.account[ran],
            groups=1,
            bounds=month_bounds(trace),
            origin=origin_day.timestamp(),
        )
        return series.tolist()  # type: ignore[no-any-return]

    # 960 core-hours a month; April has its 960 plus the running job's first day (4 x 24).
    assert seen(before, "a.swf") == seen(after, "b.swf") == [[960.0, 960.0, 1056.0, 0.0]]


def test_series_matches_splitting_each_job_by_hand() -> None:
    generator = np.random.default_rng(3)
    bounds = np.array([at(m).timestamp() for m in range(1, 8)])
    start = generator.uniform(bounds[0] - 40 * DAY, bounds[-1], size=300)
    end = start + generator.exponential(20 * DAY, size=300)
    weight = generator.integers(1, 64, size=300).astype(float)
    group = generator.integers(0, 3, size=300)
    origin = float(bounds[4] + 10 * DAY)
    expected = np.zeros((3, 6))
    for s, e, w, g in zip(start, end, weight, group, strict=True):
        for month in range(6):
            inside = min(e, origin, bounds[month + 1]) - max(s, bounds[month])
            expected[g, month] += max(0.0, inside) * w / 3600
    got = job_series(start, end, weight, group, groups=3, bounds=bounds, origin=origin)
    assert np.allclose(got, expected, rtol=1e-12, atol=1e-6)
    assert not got[:, 5].any()  # the month after the origin's holds nothing yet


# -- the model on synthetic series -------------------------------------------------------


def test_constant_series_is_forecast_exactly() -> None:
    history = np.full((30, 8), 500.0)
    result = forecast(history, 1)
    assert result.point.tolist() == [500.0] * 30
    assert result.low.tolist() == result.high.tolist() == [500.0] * 30


def test_level_weighs_recent_months_most() -> None:
    assert level(np.array([[0.0, 0.0, 8.0]])).tolist() == [4.0]


def test_steady_trend_is_learnt_from_past_errors() -> None:
    months = np.arange(1, 13, dtype=float)
    history = np.outer(np.linspace(1, 3, 40), 1000 + 100 * months)  # 40 groups, +100 a month
    result = forecast(history[:, :-1], 1)
    actual = history[:, -1]
    lag = np.abs(level(history[:, :-1]) - actual)
    assert np.all(lag > 0.05 * actual)  # the level alone lags a trend ...
    assert np.all(np.abs(result.point - actual) < lag / 2)  # ... its past errors correct that


def test_noise_intervals_cover_about_80_percent() -> None:
    generator = np.random.default_rng(7)
    sizes = generator.uniform(2_000, 50_000, size=(400, 1))
    history = sizes * generator.lognormal(0, 0.4, size=(400, 10))
    result = forecast(history[:, :-1], 1, pool_min_mean=1000)
    actual = history[:, -1]
    coverage = np.mean((result.low <= actual) & (actual <= result.high))
    assert 0.74 <= coverage <= 0.86


def test_idle_groups_are_calibrated_apart_from_active_ones() -> None:
    active = np.full((40, 8), 1000.0)
    stopped = np.hstack([np.full((40, 4), 1000.0), np.zeros((40, 4))])  # idle since month 5
    result = forecast(np.vstack([active, stopped]), 1)
    assert result.point.tolist() == [1000.0] * 40 + [0.0] * 40
    assert result.high[40:].tolist() == [0.0] * 40


def test_idle_groups_forecast_nothing_when_the_replay_says_they_stay_idle() -> None:
    active = np.full((40, 6), 1000.0)
    stopped = np.tile([1000.0, 1000.0, 1000.0, 0.0, 0.0, 0.0], (3, 1))  # 6 idle ratios, all 0
    result = forecast(np.vstack([active, stopped]), 1)
    # Six idle ratios are too few for an interval of their own, enough for a median: the
    # point is 0, while the interval (borrowed from the pool) still scales the level.
    assert result.point[40:].tolist() == [0.0] * 3
    assert np.all(result.high[40:] > 0)
    returning = np.tile([1000.0, 0.0, 1000.0, 0.0, 1000.0, 0.0], (3, 1))  # idle ones come back
    again = forecast(np.vstack([active, returning]), 1)
    assert np.all(again.point[40:] > 0)


def test_smoothing_is_chosen_by_the_replay_and_sees_only_the_past() -> None:
    generator = np.random.default_rng(11)
    walk = 5000 * np.exp(np.cumsum(generator.normal(0, 0.3, size=(60, 10)), axis=1))
    noise = 5000 * generator.lognormal(0, 0.5, size=(60, 10))
    assert forecast(walk, 1).alpha >= 0.75  # a random walk is followed month to month ...
    assert forecast(noise, 1).alpha <= 0.5  # ... noise around a constant is smoothed
    for history, horizon in ((walk, 1), (noise, 1), (walk, 3), (noise, 2)):
        # Replay by hand, each forecast from its own prefix of months only: the chosen
        # smoothing is the one whose replay has the smallest median APE (all rows active).
        losses = []
        for alpha in ALPHAS:
            ratios = np.concatenate(
                [
                    history[:, j + horizon - 1] / level(history[:, :j], alpha)
                    for j in range(2, history.shape[1] - horizon + 1)
                ]
            )
            losses.append(median_ape(np.full(len(ratios), np.median(ratios)), ratios))
        result = forecast(history, horizon)
        assert result.alpha == ALPHAS[int(np.argmin(losses))]


def test_median_ape_scores_empty_months_as_the_harness_does() -> None:
    ratios = np.array([0.0, 0.0, 2.0])
    assert median_ape(np.zeros(3), ratios) == 0.0  # two empty months forecast exactly
    assert median_ape(np.ones(3), ratios) == np.inf  # something forecast for nothing
    assert median_ape(np.array([0.0, 0.0, 1.0]), ratios) == 0.0


def test_too_short_a_history_is_a_forecast_error() -> None:
    with pytest.raises(ForecastError, match="2 whole month"):
        forecast(np.ones((3, 2)), 1)


# -- the ledger API ----------------------------------------------------------------------


def monthly_jobs(
    account: str, cpus: int, months: list[datetime], user: str = "alice", gpus: int = 0
) -> list[AttemptRecord]:
    """One 10-hour job per month from the 2nd: ``cpus`` x 10 core-hours each month."""
    return [
        AttemptRecord(
            job_id=f"{account}-{month:%Y%m}",
            attempt=1,
            state=JobState.COMPLETED,
            user=user,
            account=account,
            submit=month + timedelta(days=1),
            start=month + timedelta(days=1),
            end=month + timedelta(days=1, hours=10),
            alloc_cpus=cpus,
            alloc_gpus=gpus,
            req_walltime_s=36000,
        )
        for month in months
    ]


MONTHS = [at(m) for m in range(1, 13)]


def test_forecast_usage_of_a_steady_account_and_no_look_ahead(ledger: Ledger) -> None:
    ledger.upsert_attempts("c", "slurm", monthly_jobs("physics", 200, MONTHS[:6]), source="t")
    ledger.upsert_attempts(
        "c", "slurm", monthly_jobs("chem", 150, MONTHS[:6], user="bob", gpus=2), source="t"
    )
    as_of = at(6, 20)
    result = forecast_usage(ledger, account="physics", as_of=as_of)
    assert [m.month for m in result] == [date(2024, 7, 1), date(2024, 8, 1), date(2024, 9, 1)]
    assert all(m.core_hours == pytest.approx(2000) for m in result)
    assert all(m.core_low == pytest.approx(2000) == m.core_high for m in result)
    assert result[0].gpu_hours == 0.0
    # A job running across as_of, and jobs after it, change nothing seen at as_of.
    running = AttemptRecord(
        job_id="late",
        attempt=1,
        state=JobState.COMPLETED,
        user="alice",
        account="physics",
        start=at(6, 19),
        end=at(8, 1),
        alloc_cpus=500,
    )
    ledger.upsert_attempts("c", "slurm", [running], source="t")
    ledger.upsert_attempts("c", "slurm", monthly_jobs("physics", 999, MONTHS[6:]), source="t")
    assert forecast_usage(ledger, account="physics", as_of=as_of) == result
    machine = forecast_usage(ledger, as_of=at(6, 1), months=1)
    assert [m.month for m in machine] == [date(2024, 6, 1)]
    assert machine[0].core_hours == pytest.approx(3500)
    bob = forecast_usage(ledger, user="bob", as_of=as_of)[0]
    assert bob.core_hours == pytest.approx(1500)
    assert bob.gpu_hours == pytest.approx(20)
    assert bob.gpu_low == pytest.approx(20) == bob.gpu_high


def test_forecast_usage_with_too_little_history(ledger: Ledger) -> None:
    ledger.upsert_attempts("c", "slurm", monthly_jobs("physics", 8, MONTHS[:3]), source="t")
    with pytest.raises(ForecastError, match="at least 3"):
        forecast_usage(ledger, account="physics", as_of=at(3, 20))
    with pytest.raises(ForecastError, match="'nobody'"):
        forecast_usage(ledger, user="nobody", as_of=at(6, 1))


def test_budget_burndown_dates(ledger: Ledger) -> None:
    # 2,000 core-hours a month (~65.6 a day in a 30.5-day month) through June.
    ledger.upsert_attempts("c", "slurm", monthly_jobs("physics", 200, MONTHS[:6]), source="t")
    ledger.set_allocation("physics", at(4), at(4, year=2025), core_hours=10_000)
    as_of = at(7)
    burn = budget_burndown(ledger, "physics", as_of=as_of)
    assert burn.granted_core_hours == 10_000
    assert burn.used_core_hours == pytest.approx(6000)  # April, May, June
    assert burn.daily_burn_current == pytest.approx(2000 / 30)  # June's job, last 30 days
    # 4,000 left at 2,000 a month spread evenly: July and August use it up exactly.
    assert burn.exhaustion_forecast == date(2024, 9, 1)
    assert burn.exhaustion_early == burn.exhaustion_late == burn.exhaustion_forecast
    assert burn.exhaustion_current == (as_of + timedelta(days=4000 / (2000 / 30))).date()
    assert [m.month.month for m in burn.forecast] == [7, 8, 9]
    lasting = budget_burndown(ledger, "physics", as_of=at(5, 15))
    assert lasting.used_core_hours == pytest.approx(4000)  # April's and May's jobs
    none = budget_burndown(ledger, "physics", as_of=at(5, year=2025))
    assert none.granted_core_hours is None
    assert none.exhaustion_forecast is None


def test_budget_that_outlasts_its_allocation(ledger: Ledger) -> None:
    ledger.upsert_attempts("c", "slurm", monthly_jobs("physics", 10, MONTHS[:6]), source="t")
    ledger.set_allocation("physics", at(1), at(12), core_hours=1_000_000)
    burn = budget_burndown(ledger, "physics", as_of=at(7))
    assert burn.exhaustion_current is None
    assert burn.exhaustion_forecast is None
    assert burn.exhaustion_late is None


# -- CLI and harness ---------------------------------------------------------------------


def test_cli_usage_budget_and_exit_code_for_too_little_history(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as opened:
        opened.upsert_attempts("c", "slurm", monthly_jobs("physics", 200, MONTHS[:6]), source="t")
        opened.set_allocation("physics", at(4), at(4, year=2025), core_hours=10_000)
    runner = CliRunner()
    base = ["--ledger", ledger_url, "--as-of", "2024-07-01"]
    usage = runner.invoke(main, ["forecast", "usage", "--account", "physics", *base, "--json"])
    assert usage.exit_code == 0, usage.output
    assert json.loads(usage.output)[0]["core_hours"] == pytest.approx(2000)
    assert json.loads(usage.output)[0]["method"] == "combined"  # no baseline did better
    table = runner.invoke(main, ["forecast", "usage", "--account", "physics", *base])
    assert table.output.splitlines()[1].endswith("(combined)")
    budget = runner.invoke(main, ["forecast", "budget", "physics", *base])
    assert budget.exit_code == 0, budget.output
    assert "runs out at the forecast rate: 2024-09-01" in budget.output
    short = ["forecast", "usage", "--ledger", ledger_url, "--as-of", "2024-02-15"]
    early = runner.invoke(main, short)
    assert early.exit_code == 9
    assert "at least 3" in early.output


def test_harness_end_to_end_on_a_synthetic_trace(tmp_path: Path) -> None:
    generator = np.random.default_rng(1)
    jobs = []
    for day in range(0, 330, 2):
        for group in (1, 2, 3):
            run = int(generator.uniform(0.5, 1.5) * 40_000 * group)
            jobs.append((day * DAY + group * 600, run, 8 * group, group, group))
    trace = swf(tmp_path / "synthetic.swf", jobs)
    result = CliRunner().invoke(main, ["forecast", "evaluate", str(trace), "--json"])
    assert result.exit_code == 0, result.output
    (data,) = json.loads(result.output)["traces"]
    methods = {(s["level"], s["method"], s["horizon"]) for s in data["usage"]}
    assert ("account", "model", 1) in methods
    assert ("machine", "last month", 3) in methods
    assert ("account", "mean of last 3", 1) in methods
    assert {s["method"] for s in data["runtime"]} == {"model", "requested walltime", "last two"}
    assert len(data["months"]) == 10  # Feb .. Nov 2024: partial January and December dropped
    assert len(data["targets"]) == 5
    machine = next(s for s in data["usage"] if s["level"] == "machine" and s["horizon"] == 1)
    assert machine["count"] == 7  # origins after the 3-month warm-up
    assert sum(data["chosen"]["machine h=1"].values()) == 7  # what the model used at each
    table = CliRunner().invoke(main, ["forecast", "evaluate", str(trace)])
    assert "machine" in table.output
    assert "targets:" in table.output


def test_harness_scores_each_trace_apart_and_sums_up_targets_per_trace(tmp_path: Path) -> None:
    steady = [(day * DAY, 20_000, 16, 1 + day % 2, 1 + day % 2) for day in range(0, 330, 2)]
    generator = np.random.default_rng(2)
    bursty = [(day * DAY, int(generator.exponential(30_000)), 64, 3, 3) for day in range(0, 250, 3)]
    paths = [str(swf(tmp_path / "steady.swf", steady)), str(swf(tmp_path / "bursty.swf", bursty))]
    result = CliRunner().invoke(main, ["forecast", "evaluate", *paths, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [t["trace"] for t in data["traces"]] == paths
    assert [len(t["months"]) for t in data["traces"]] == [10, 7]  # each its own whole months
    for trace, summary in zip(data["traces"], data["summary"], strict=True):
        met = [t["name"] for t in trace["targets"] if t["met"]]
        assert summary["met"] == len(met)
        assert summary["met_names"] == met
        assert summary["targets"] == len(trace["targets"]) == 5
        assert summary["read_seconds"] > 0
        assert summary["scored_seconds"] > 0
    steady_machine = next(
        s
        for s in data["traces"][0]["usage"]
        if (s["level"], s["method"], s["horizon"]) == ("machine", "model", 1)
    )
    assert steady_machine["median_ape"] < 0.1  # the same jobs every month (of 30 or 31 days)
    table = CliRunner().invoke(main, ["forecast", "evaluate", *paths])
    assert table.output.count("targets:") == 2
    assert "targets met per trace:" in table.output
    assert f"  {paths[1]}: " in table.output.split("targets met per trace:")[1]


def test_harness_on_too_short_a_trace_exits_9(tmp_path: Path) -> None:
    trace = swf(tmp_path / "short.swf", [(d * DAY, 3600, 4, 1, 1) for d in range(0, 80, 2)])
    result = CliRunner().invoke(main, ["forecast", "evaluate", str(trace)])
    assert result.exit_code == 9
    assert "2 whole month(s)" in result.output


def test_ledger_and_trace_build_the_same_series(ledger: Ledger, tmp_path: Path) -> None:
    generator = np.random.default_rng(5)
    jobs = [
        (int(submit), int(generator.exponential(3 * DAY)), int(procs), int(user), int(user % 3))
        for submit, procs, user in zip(
            np.sort(generator.uniform(0, 200 * DAY, 400)),
            generator.integers(1, 32, 400),
            generator.integers(1, 7, 400),
            strict=True,
        )
    ]
    trace_path = swf(tmp_path / "same.swf", jobs)
    import_swf(ledger, SwfTrace(trace_path), cluster="c")
    trace = read_trace(trace_path)
    as_of = at(7, 1)
    from_ledger = ledger_series(ledger, "account", as_of)
    bounds = np.array([at(m).timestamp() for m in range(2, 8)])  # February .. June
    ran = ~np.isnan(trace.start)
    from_trace = job_series(
        trace.start[ran],
        trace.end[ran],
        trace.cpus[ran],
        trace.account[ran],
        groups=len(trace.accounts),
        bounds=bounds,
        origin=as_of.timestamp(),
    )
    assert from_ledger.months == tuple(date(2024, m, 1) for m in range(2, 7))
    for row, name in enumerate(trace.accounts):
        assert from_ledger.core_hours[from_ledger.row(str(name))] == pytest.approx(from_trace[row])
