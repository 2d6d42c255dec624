"""Usage reports on hand-built attempts whose numbers are known, on SQLite and PostgreSQL.

Each test that takes ``ledger`` runs on both databases, so the SQL (a VALUES CTE, clipping
with GREATEST/LEAST or SQLite's max/min, integer sums that PostgreSQL returns as Decimal)
is checked where it runs.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import Balance, UsageReport, parse_group_by, usage_report
from hpcbridge.reports import usage_render


def t(day: int, hour: int = 0, month: int = 1) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


JAN, FEB, MAR = t(1), t(1, month=2), t(1, month=3)
NOW = t(10, month=2)


def job(job_id: str, start: datetime | None, end: datetime | None, **fields: Any) -> AttemptRecord:
    values: dict[str, Any] = {
        "state": JobState.COMPLETED,
        "user": "alice",
        "account": "physics",
        "partition": "batch",
        "submit": start,
        "start": start,
        "end": end,
        "alloc_cpus": 4,
    }
    values.update(fields)
    return AttemptRecord(job_id=job_id, attempt=1, **values)


def load(ledger: Ledger, *records: AttemptRecord, cluster: str = "c1") -> None:
    ledger.upsert_attempts(cluster, "slurm", records, source="test")


def printed(renderable: Table) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=250).print(renderable)
    return buffer.getvalue()


def table(report: UsageReport) -> list[tuple[Any, ...]]:
    """Rows as (keys..., core-hours, GPU-hours, jobs) for compact comparisons."""
    return [
        (*row.keys, round(row.usage.core_hours, 6), round(row.usage.gpu_hours, 6), row.usage.jobs)
        for row in report.rows
    ]


def test_a_job_crossing_a_month_boundary_is_split_exactly(ledger: Ledger) -> None:
    # 4 CPUs and 2 GPUs from Jan 31 22:00 to Feb 1 03:00: 2 hours in January, 3 in February.
    load(ledger, job("1", t(31, 22), t(1, 3, month=2), alloc_gpus=2))
    report = usage_report(ledger, ["month"], JAN, MAR, now=NOW)
    assert table(report) == [("2024-01", 8.0, 4.0, 1), ("2024-02", 12.0, 6.0, 0)]
    assert report.total.core_hours == 20.0
    assert report.total.jobs == 1


def test_the_report_bounds_clip_jobs_too(ledger: Ledger) -> None:
    load(ledger, job("1", t(31, 22), t(1, 3, month=2)), job("2", t(2), t(3)))
    report = usage_report(ledger, ["account"], t(31, 23), t(1, 1, month=2), now=NOW)
    assert table(report) == [("physics", 8.0, 0.0, 0)]


def test_running_jobs_count_up_to_now(ledger: Ledger) -> None:
    load(ledger, job("1", t(9, 12, month=2), None, state=JobState.RUNNING, alloc_cpus=2))
    assert table(usage_report(ledger, ["state"], FEB, MAR, now=NOW)) == [("RUNNING", 24.0, 0.0, 1)]
    # A report that ends before now (the real clock here) counts up to its own end.
    early_end = t(9, 18, month=2)
    assert table(usage_report(ledger, ["state"], FEB, early_end)) == [("RUNNING", 12.0, 0.0, 1)]
    assert usage_report(ledger, ["state"], JAN, FEB, now=NOW).rows == []


def test_jobs_that_never_started_use_nothing_and_are_not_counted(ledger: Ledger) -> None:
    load(ledger, job("1", None, None, state=JobState.CANCELLED, submit=t(5)))
    assert usage_report(ledger, ["account"], JAN, MAR, now=NOW).rows == []


def test_mean_wait_and_cpu_efficiency(ledger: Ledger) -> None:
    load(
        ledger,
        # waited 1 h, 4 CPUs x 2 h = 8 CPU-hours available, 6 used
        job("1", t(5, 1), t(5, 3), submit=t(5, 0), cpu_time_s=6 * 3600.0),
        # waited 3 h, 2 CPUs x 1 h = 2 available, 0.5 used
        job("2", t(6, 3), t(6, 4), submit=t(6, 0), alloc_cpus=2, cpu_time_s=1800.0),
        # no CPU time reported: counts for the wait, not for efficiency
        job("3", t(7, 2), t(7, 4), submit=t(7, 0)),
    )
    [row] = usage_report(ledger, ["user"], JAN, FEB, now=NOW).rows
    assert row.keys == ("alice",)
    assert row.usage.mean_wait_s == pytest.approx(2 * 3600)
    assert row.usage.cpu_efficiency_pct == pytest.approx(100 * 6.5 / 10)
    assert row.usage.core_hours == pytest.approx(8 + 2 + 8)


def test_grouping_by_several_keys_names_and_sorts_them(ledger: Ledger) -> None:
    load(
        ledger,
        job("1", t(5), t(5, 1), user="bob", partition="gpu", state=JobState.FAILED),
        job("2", t(5), t(5, 2), user="alice"),
        job("3", t(5), t(5, 3), user="alice", account=None),
        job("4", t(5), t(5, 1), user="alice", account="chemistry"),
    )
    report = usage_report(ledger, ["account", "user", "partition", "state"], JAN, FEB, now=NOW)
    assert table(report) == [
        ("chemistry", "alice", "batch", "COMPLETED", 4.0, 0.0, 1),
        ("physics", "alice", "batch", "COMPLETED", 8.0, 0.0, 1),
        ("physics", "bob", "gpu", "FAILED", 4.0, 0.0, 1),
        (None, "alice", "batch", "COMPLETED", 12.0, 0.0, 1),  # no account: last
    ]


def test_allocations_are_compared_pro_rata_per_account(ledger: Ledger) -> None:
    # 2024 has 366 days: 8784 core-hours for the year is 24 a day, 744 in January.
    ledger.set_allocation("physics", JAN, t(1).replace(year=2025), 8784.0, gpu_hours=366.0)
    load(
        ledger,
        job("1", t(2), t(3, 22), alloc_cpus=4, alloc_gpus=1),  # 46 h: 184 core-h, 46 GPU-h
        job("2", t(2), t(2, 2), user="bob", alloc_cpus=1),  # 2 core-h
        job("3", t(2), t(2, 10), account="chemistry"),  # no allocation
    )
    report = usage_report(ledger, ["account", "user"], JAN, FEB, now=NOW)
    balances = {row.keys: row.balance for row in report.rows}
    physics = Balance(744.0, 31.0, 186.0, 46.0)
    assert balances == {
        ("chemistry", "alice"): None,
        ("physics", "alice"): physics,  # the account's balance on each of its rows
        ("physics", "bob"): physics,
    }
    assert physics.remaining_core_hours == 558.0
    assert physics.core_used_pct == 25.0
    assert physics.gpu_used_pct == pytest.approx(100 * 46 / 31)
    assert report.total_balance == physics


def test_allocations_per_month(ledger: Ledger) -> None:
    ledger.set_allocation("physics", JAN, MAR, 600.0)  # 31 days of 60 in January
    load(ledger, job("1", t(31, 12), t(1, 12, month=2), alloc_cpus=10))  # 120 + 120 core-h
    report = usage_report(ledger, ["account", "month"], JAN, MAR, now=NOW)
    jan, feb = (row.balance for row in report.rows)
    assert jan == Balance(310.0, 0.0, 120.0, 0.0)
    assert feb == Balance(290.0, 0.0, 120.0, 0.0)
    assert report.total_balance == Balance(600.0, 0.0, 240.0, 0.0)
    assert report.total_balance.core_used_pct == 40.0


def test_attempts_spanning_months_and_the_report_bounds(ledger: Ledger) -> None:
    load(
        ledger,
        # Dec 31 12:00 to Mar 2 12:00, 1 CPU: clipped to Jan 1 by the report, then whole
        # January (744 h) and February (696 h, a leap year) and 12 h of March.
        job("1", t(31, 12, month=12).replace(year=2023), t(2, 12, month=3), alloc_cpus=1),
        # zero-length, exactly on the February boundary: counted in February, no hours
        job("2", FEB, FEB),
        # running since Feb 28 00:00 with 2 CPUs: 48 h of February, then up to the report end
        job("3", t(28, month=2), None, state=JobState.RUNNING, alloc_cpus=2),
    )
    report = usage_report(ledger, ["month"], JAN, t(2, month=3), now=t(10, month=3))
    assert table(report) == [
        ("2024-01", 744.0, 0.0, 0),
        ("2024-02", 696.0 + 2 * 48, 0.0, 2),
        ("2024-03", 24.0 + 2 * 24, 0.0, 0),
    ]


def test_month_split_matches_a_direct_computation(ledger: Ledger) -> None:
    """Random attempts (on and off boundaries, running, long, zero-length) against the
    definition: cpus x overlap of [start, end or now) with each month of the report."""
    rng = random.Random(7)
    origin = int(t(15, month=12).replace(year=2023).timestamp())
    month_starts = [int(t(1, month=m).timestamp()) for m in (1, 2, 3, 4)]
    records = []
    for index in range(300):
        start = rng.choice([origin + rng.randrange(120 * 86400), rng.choice(month_starts)])
        length = rng.choice([0, rng.randrange(7200), rng.randrange(70 * 86400)])
        end = None if index % 17 == 0 else start + length
        records.append(
            job(
                str(index),
                datetime.fromtimestamp(start, UTC),
                None if end is None else datetime.fromtimestamp(end, UTC),
                account=f"a{index % 3}",
                alloc_cpus=rng.randrange(1, 9),
                alloc_gpus=rng.choice([None, 0, 1, 4]),
            )
        )
    load(ledger, *records)
    now = t(20, month=3)
    for first, last in [(JAN, t(1, month=4)), (t(15, 12), t(3, 6, month=3)), (FEB, MAR)]:
        report = usage_report(ledger, ["account", "month"], first, last, now=now)
        got = {
            (*row.keys, measure): value
            for row in report.rows
            for measure, value in zip(MEASURES, astuple(row.usage)[:3], strict=True)
        }
        assert got == pytest.approx(expected_by_month(records, first, last, now))


MEASURES = ("core_hours", "gpu_hours", "jobs")


def expected_by_month(
    records: list[AttemptRecord], first: datetime, last: datetime, now: datetime
) -> dict[tuple[Any, ...], float]:
    expected: dict[tuple[Any, ...], float] = {}
    month = first.replace(day=1, hour=0)
    while month < last:
        following = (month + timedelta(days=32)).replace(day=1)
        low, high = max(first, month), min(last, following)
        for record in records:
            assert record.start is not None
            end = record.end or now
            seconds = max(0.0, (min(end, high) - max(record.start, low)).total_seconds())
            started = low <= record.start < high
            if seconds or started:
                amounts = (
                    (record.alloc_cpus or 0) * seconds / 3600,
                    (record.alloc_gpus or 0) * seconds / 3600,
                    started,
                )
                for measure, amount in zip(MEASURES, amounts, strict=True):
                    key = (record.account, f"{month:%Y-%m}", measure)
                    expected[key] = expected.get(key, 0) + amount
        month = following
    return expected


def test_account_and_cluster_filters(ledger: Ledger) -> None:
    load(ledger, job("1", t(5), t(5, 1)), job("2", t(5), t(5, 1), account="chemistry"))
    load(ledger, job("1", t(5), t(5, 2)), cluster="c2")
    assert table(usage_report(ledger, ["account"], JAN, FEB, cluster="c2", now=NOW)) == [
        ("physics", 8.0, 0.0, 1)
    ]
    assert table(usage_report(ledger, ["account"], JAN, FEB, account="chemistry", now=NOW)) == [
        ("chemistry", 4.0, 0.0, 1)
    ]
    assert usage_report(ledger, ["account"], JAN, FEB, account="nobody", now=NOW).rows == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acount", "cannot group by 'acount'; choose from account, user, month, partition, state"),
        ("month,month", "'month' given more than once"),
        ("", "cannot group by ''"),
    ],
)
def test_bad_group_by_values_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_group_by(text)


def test_bounds_must_be_aware_and_in_order(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        usage_report(ledger, ["account"], datetime(2024, 1, 1), FEB)
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        usage_report(ledger, ["account"], FEB, JAN)


# -- formats --------------------------------------------------------------------------------


@pytest.fixture
def report(ledger: Ledger) -> UsageReport:
    ledger.set_allocation("physics", JAN, FEB, 100.0)
    load(
        ledger,
        job("1", t(5, 1), t(5, 3), submit=t(5), cpu_time_s=4 * 3600.0),
        job("2", t(5), t(5, 1), user="bob|pipe", account="chemistry"),
    )
    return usage_report(ledger, ["account", "user"], JAN, FEB, now=NOW)


def test_csv_has_plain_numbers_and_no_total(report: UsageReport) -> None:
    rows = list(csv.DictReader(io.StringIO(usage_render.render(report, "csv"))))
    assert [(r["account"], r["user"], r["core_hours"], r["core_used_pct"]) for r in rows] == [
        ("chemistry", "bob|pipe", "4.0", ""),
        ("physics", "alice", "8.0", "8.0"),
    ]
    assert rows[1]["mean_wait_s"] == "3600.0"
    assert rows[1]["cpu_efficiency_pct"] == "50.0"


def test_json_has_rows_and_total(report: UsageReport) -> None:
    document = json.loads(usage_render.render(report, "json"))
    assert document["by"] == ["account", "user"]
    assert document["from"] == "2024-01-01T00:00:00+00:00"
    assert document["rows"][1] | {"mean_wait_s": 3600.0} == document["rows"][1]
    assert document["rows"][0]["granted_core_hours"] is None
    assert document["total"]["core_hours"] == 12.0
    assert document["total"]["jobs"] == 2
    assert document["total"]["remaining_core_hours"] == 92.0


def test_markdown_comes_from_the_template(report: UsageReport) -> None:
    text = usage_render.render(report, "markdown")
    lines = text.splitlines()
    assert lines[0] == (
        "## Usage 2024-01-01 00:00 to 2024-02-01 00:00 UTC (all clusters, all accounts) "
        "by account, user"
    )
    assert lines[2].startswith("| account | user | core-h | GPU-h | jobs | mean wait |")
    assert lines[3].startswith("| --- | --- | ---: | ---: |")
    assert (
        lines[4] == "| chemistry | bob\\|pipe | 4.00 | 0.00 | 1 | 00:00:00 |  |  |  |  |  |  |  |"
    )
    assert lines[5].startswith("| physics | alice | 8.00 | 0.00 | 1 | 01:00:00 | 50.0% | 100.00 |")
    assert lines[6].startswith("| total |  | 12.00 | 0.00 | 2 | 00:30:00 | 50.0% | 100.00 | 92.00")


def test_table_has_a_total_footer(report: UsageReport) -> None:
    text = printed(usage_render.table(report))
    assert "Usage 2024-01-01 00:00 to 2024-02-01 00:00 UTC" in text
    assert "bob|pipe" in text
    assert "total" in text
    assert "12.00" in text


def test_an_empty_range_renders_in_every_format(ledger: Ledger) -> None:
    empty = usage_report(ledger, ["account", "month"], JAN, FEB, now=NOW)
    assert empty.rows == []
    assert usage_render.render(empty, "csv").splitlines() == [
        "account,month,core_hours,gpu_hours,jobs,mean_wait_s,cpu_efficiency_pct,"
        "granted_core_hours,remaining_core_hours,core_used_pct,granted_gpu_hours,"
        "remaining_gpu_hours,gpu_used_pct"
    ]
    document = json.loads(usage_render.render(empty, "json"))
    assert document["rows"] == []
    assert document["total"]["core_hours"] == 0.0
    assert document["total"]["mean_wait_s"] is None
    assert "No usage in this range." in usage_render.render(empty, "markdown")
    assert "no usage in this range" in printed(usage_render.table(empty))


# -- the command ----------------------------------------------------------------------------


def test_cli_report_as_json(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as opened:
        load(opened, job("1", t(31, 22), t(1, 3, month=2)))
    result = CliRunner().invoke(
        main,
        [
            *("report", "usage", "--by", "month", "--from", "2024-01-01", "--to", "2024-03"),
            *("--format", "json", "--ledger", ledger_url),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["month"], r["core_hours"]) for r in rows] == [("2024-01", 8.0), ("2024-02", 12.0)]


def test_cli_default_range_is_the_month_of_to(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as opened:
        load(opened, job("1", t(31, 22), t(1, 3, month=2)))
    result = CliRunner().invoke(
        main, ["report", "usage", "--to", "2024-02-01", "--format", "csv", "--ledger", ledger_url]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("physics,8.0,")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--by", "account,acount"], "Invalid value for '--by': cannot group by 'acount'"),
        (["--from", "2024-02-01", "--to", "2024-01-01"], "Invalid value for '--to'"),
        (["--from", "yesterday"], "Invalid value for '--from'"),
    ],
)
def test_cli_names_bad_options(tmp_path: Any, arguments: list[str], message: str) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    result = CliRunner().invoke(main, ["report", "usage", *arguments, "--ledger", ledger_url])
    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_report_on_a_missing_ledger_says_how_to_create_it(tmp_path: Any) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'none.sqlite'}"
    result = CliRunner().invoke(main, ["report", "usage", "--ledger", ledger_url])
    assert result.exit_code == 8
    assert "hpcbridge ledger upgrade" in result.stderr
