"""Grant reports on hand-built ledgers whose numbers are worked out here, on SQLite and
PostgreSQL: the numbers, every format, the self-contained HTML, atomic --out, and an SWF
trace in the SDSC DataStar format checked against SQL on the ledger it was imported into.

The expected numbers are computed by :func:`expected`, a plain loop over the test's own
records that clips each run to each month, not by the code under test.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.errors import ConfigError, ForecastError
from hpcbridge.forecast.usage import budget_burndown
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.store import Ledger
from hpcbridge.reports import grant_render
from hpcbridge.reports.grant import GrantReport, grant_report


def t(month: int, day: int, hour: int = 0, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


START, END, NOW = t(1, 1), t(4, 1), t(3, 20)
MONTHS = [(t(1, 1), t(2, 1)), (t(2, 1), t(3, 1)), (t(3, 1), t(4, 1))]
ALLOCATION = (t(7, 1, year=2023), t(7, 1), 5000.0, 20.0)


def job(job_id: str, user: str, start: datetime | None, end: datetime | None, cpus: int,
        **fields: Any) -> AttemptRecord:  # fmt: skip
    values: dict[str, Any] = {
        "state": JobState.COMPLETED if end else JobState.RUNNING,
        "user": user,
        "account": "physics",
        "submit": start,
        "start": start,
        "end": end,
        "alloc_cpus": cpus,
    }
    return AttemptRecord(job_id=job_id, attempt=1, **(values | fields))


RECORDS = [
    job("1", "alice", t(1, 5, 1), t(1, 5, 3), 4, cpu_time_s=6 * 3600.0, name="relax"),
    # Across the January/February boundary, with GPUs: 4 hours in each month.
    job("2", "bob", t(1, 31, 20), t(2, 1, 4), 8, alloc_gpus=2, cpu_time_s=48 * 3600.0),
    job("3", "alice", t(2, 10), t(2, 12), 16, name="md-large"),
    job("4", "carol", t(3, 1), t(3, 2), 2, state=JobState.FAILED),
    job("5", "bob", t(3, 15), None, 4),  # still running at NOW
    job("6", "alice", None, None, 64, state=JobState.CANCELLED),  # never ran
    # An array task that began before the report: only its January half is in it.
    job("7", "dave", t(12, 31, 12, year=2023), t(1, 1, 12), 1, array_index=3),
    job("8", "erin", t(1, 10), t(1, 11), 64, account="chemistry"),  # another account
]


def load(ledger: Ledger) -> None:
    ledger.upsert_attempts("c1", "slurm", RECORDS, source="test")
    ledger.set_allocation("physics", *ALLOCATION)
    ledger.set_allocation("physics", t(1, 1, year=2023), t(7, 1, year=2023), 100.0)  # before


def _inside(record: AttemptRecord, first: datetime, last: datetime, now: datetime) -> float:
    """Seconds of the record's run inside [first, last)."""
    if record.start is None:
        return 0.0
    end = record.end or now
    return max(0.0, (min(end, last) - max(record.start, first)).total_seconds())


def expected(
    records: Sequence[AttemptRecord], first: datetime, last: datetime, now: datetime
) -> dict[str, float]:
    """core_hours, gpu_hours, jobs (started inside), cpu_efficiency_pct of the records."""
    started = [r for r in records if r.start is not None and first <= r.start < last]
    measured = [r for r in started if r.cpu_time_s is not None and r.end is not None]
    available = sum((r.alloc_cpus or 0) * (r.end - r.start).total_seconds() for r in measured)  # type: ignore[operator]
    return {
        "core_hours": sum((r.alloc_cpus or 0) * _inside(r, first, last, now) for r in records)
        / 3600,
        "gpu_hours": sum((r.alloc_gpus or 0) * _inside(r, first, last, now) for r in records)
        / 3600,
        "jobs": len(started),
        "cpu_efficiency_pct": (
            100 * sum(r.cpu_time_s or 0 for r in measured) / available if available else None
        ),
    }


PHYSICS = [r for r in RECORDS if r.account == "physics"]


def check_usage(actual: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key, value in wanted.items():
        assert actual[key] == (value if value is None else pytest.approx(value)), key


@pytest.fixture
def report(ledger: Ledger) -> GrantReport:
    load(ledger)
    return grant_report(ledger, "physics", START, END, top=3, now=NOW)


def test_usage_by_month_and_user_matches_an_independent_computation(report: GrantReport) -> None:
    tables = grant_render.sections(report)
    assert [row["month"] for row in tables["month"]] == ["2024-01", "2024-02", "2024-03"]
    for row, (first, last) in zip(tables["month"], MONTHS, strict=True):
        check_usage(row, expected(PHYSICS, first, last, NOW))
    # By hand: January 12 (array task) + 8 + 32; February 32 + 768; March 48 + 5 days x 4 x 24.
    assert [row["core_hours"] for row in tables["month"]] == pytest.approx([52, 800, 528])
    users = {row["user"]: row for row in tables["user"]}
    assert list(users) == ["alice", "bob", "carol", "dave"]  # most core-hours first
    for user, row in users.items():
        mine = [r for r in PHYSICS if r.user == user]
        check_usage(row, expected(mine, START, END, NOW))
    whole = expected(PHYSICS, START, END, NOW)
    assert users["alice"]["core_share_pct"] == pytest.approx(100 * 776 / whole["core_hours"])
    check_usage(grant_render._usage(report.total), whole)
    assert report.total.gpu_hours == pytest.approx(16.0)


def test_allocation_use_counts_the_whole_grant_up_to_as_of(report: GrantReport) -> None:
    [allocation] = grant_render.sections(report)["allocation"]  # the 2023 grant is not listed
    used = expected(PHYSICS, ALLOCATION[0], NOW, NOW)
    assert allocation["starts"] == ALLOCATION[0]
    assert allocation["used_core_hours"] == pytest.approx(used["core_hours"])
    assert allocation["used_core_hours"] == pytest.approx(52 + 12 + 800 + 528)
    assert allocation["remaining_core_hours"] == pytest.approx(5000 - used["core_hours"])
    assert allocation["core_used_pct"] == pytest.approx(100 * used["core_hours"] / 5000)
    assert allocation["used_gpu_hours"] == pytest.approx(16.0)
    assert allocation["gpu_used_pct"] == pytest.approx(80.0)


def test_top_jobs_by_core_hours_inside_the_range(report: GrantReport) -> None:
    top = grant_render.sections(report)["top_jobs"]
    wanted = sorted(PHYSICS, key=lambda r: -(r.alloc_cpus or 0) * _inside(r, START, END, NOW))[:3]
    assert [row["job_id"] for row in top] == [r.job_id for r in wanted] == ["3", "5", "2"]
    for row, record in zip(top, wanted, strict=True):
        hours = (record.alloc_cpus or 0) * _inside(record, START, END, NOW) / 3600
        assert row["core_hours"] == pytest.approx(hours)
        assert row["user"] == record.user
    assert top[0] | {"name": "md-large", "state": "COMPLETED", "elapsed_s": 172800} == top[0]
    assert top[1]["elapsed_s"] == 5 * 86400  # running: up to now


def test_top_jobs_rank_and_report_the_charge_not_the_length(ledger: Ledger) -> None:
    """A job's core-hours here are what the usage report charges it: cpus x the scheduler's
    charged seconds (elapsed_s), not cpus x (end - start), and the ranking follows them."""
    ledger.upsert_attempts(
        "c1",
        "slurm",
        [
            # Suspended for a day: two days from start to end, ElapsedRaw one day.
            job("11", "alice", t(2, 1), t(2, 3), 8, elapsed_s=86400),
            job("12", "bob", t(2, 5), t(2, 6, 12), 8, elapsed_s=36 * 3600),
            # Half its length inside the range, charged 12 h of its 24: 6 h inside.
            job("13", "carol", t(3, 31, 12), t(4, 1, 12), 16, elapsed_s=12 * 3600),
        ],
        source="test",
    )
    report = grant_report(ledger, "physics", START, END, top=3, now=t(5, 1))
    top = grant_render.sections(report)["top_jobs"]
    # By length the order would be 11 (384 core-hours), 12 (288), 13 (192).
    assert [row["job_id"] for row in top] == ["12", "11", "13"]
    assert [row["core_hours"] for row in top] == pytest.approx([288, 192, 96])
    assert [row["elapsed_s"] for row in top] == [36 * 3600, 86400, 12 * 3600]
    assert report.total.core_hours == pytest.approx(288 + 192 + 96)  # as the usage report


def test_burn_down_is_cumulative_use_within_the_allocation(
    ledger: Ledger, report: GrantReport
) -> None:
    burn = report.burn
    assert burn is not None
    assert burn.allocation.starts == ALLOCATION[0]
    points = dict(burn.points)
    assert points[ALLOCATION[0]] == 0.0
    for moment in (t(1, 1), t(2, 1), t(3, 1), NOW):
        wanted = expected(PHYSICS, ALLOCATION[0], moment, NOW)["core_hours"]
        assert points[moment] == pytest.approx(wanted)
    assert max(points) == NOW
    # Two whole months of history are too few to forecast from; the report says why.
    with pytest.raises(ForecastError) as too_little:
        budget_burndown(ledger, "physics", as_of=NOW)
    assert burn.burndown is None
    assert burn.forecast_problem == str(too_little.value)


def test_burn_down_carries_the_forecast_when_there_is_history(ledger: Ledger) -> None:
    # Two years of one job a week, so the forecast has whole months to learn from.
    weekly = [
        job(f"w{week}", "alice", t(1, 1, year=2022) + timedelta(weeks=week),
            t(1, 1, year=2022) + timedelta(weeks=week, hours=10), 10)
        for week in range(110)
    ]  # fmt: skip
    ledger.upsert_attempts("c1", "slurm", weekly, source="test")
    ledger.set_allocation("physics", t(1, 1), t(1, 1, year=2025), 3000.0)
    report = grant_report(ledger, "physics", t(1, 1), t(2, 1), now=t(6, 1))
    assert report.burn is not None
    assert report.burn.burndown is not None
    down = report.burn.burndown
    assert down.as_of == t(2, 1)
    assert down.used_core_hours == pytest.approx(report.burn.points[-1][1])
    assert down.forecast[0].month == t(2, 1).date()
    document = json.loads(grant_render.to_json(report))
    assert document["burndown"]["used_core_hours"] == pytest.approx(down.used_core_hours)
    assert document["burndown"]["daily_burn_current"] == pytest.approx(down.daily_burn_current)
    assert [row["month"] for row in document["forecast"]] == [
        f"{m.month:%Y-%m}" for m in down.forecast
    ]
    html = grant_render.to_html(report)
    assert html.count("<svg") == 2
    assert "forecast (80%)" in html
    assert "exhausted at forecast burn" in html


# -- formats --------------------------------------------------------------------------------


def test_json_has_everything_under_stable_keys(report: GrantReport) -> None:
    document = json.loads(grant_render.render(report, "json"))
    assert list(document) == [
        "account", "cluster", "from", "to", "as_of", "empty", "total", "months", "users",
        "allocations", "burndown", "forecast", "top_jobs",
    ]  # fmt: skip
    assert document["from"] == "2024-01-01T00:00:00+00:00"
    assert document["as_of"] == NOW.isoformat()
    assert document["empty"] is False
    assert document["total"]["core_hours"] == pytest.approx(1380.0)
    assert document["burndown"]["granted_core_hours"] == 5000.0
    assert document["burndown"]["cumulative_core_hours"][-1]["core_hours"] == pytest.approx(1392.0)
    assert document["top_jobs"][0]["start"] == "2024-02-10T00:00:00+00:00"


def test_csv_is_one_long_table_with_a_section_column(report: GrantReport) -> None:
    rows = list(csv.DictReader(io.StringIO(grant_render.render(report, "csv"))))
    sections = [row["section"] for row in rows]
    assert sections == ["month"] * 3 + ["user"] * 4 + ["allocation"] + ["top_jobs"] * 3
    assert rows[0]["month"] == "2024-01"
    assert float(rows[0]["core_hours"]) == pytest.approx(52.0)
    assert rows[3]["user"] == "alice"
    assert rows[3]["month"] == ""
    assert rows[7]["starts"] == "2023-07-01T00:00:00+00:00"
    assert float(rows[7]["granted_core_hours"]) == 5000.0
    assert rows[8]["job_id"] == "3"
    assert rows[8]["name"] == "md-large"
    assert rows[10]["cpu_efficiency_pct"] == ""  # not a top-jobs column: blank


def test_markdown_has_the_tables_and_numbers(report: GrantReport) -> None:
    markdown = grant_render.render(report, "markdown")
    assert markdown.startswith("# Grant report: account physics\n")
    assert "- **core-hours:** 1,380.00\n" in markdown
    assert "| 2024-02 | 800.00 | 8.00 | 1 |  |" in markdown
    assert "| alice | 776.00 | 0.00 | 2 | 75.0% | 56.2% |" in markdown
    assert "| 2023-07-01 00:00 | 2024-07-01 00:00 | 5,000.00 | 1,392.00 | 3,608.00 | 27.8% |" in (
        markdown
    )
    assert "| 3 | 1 | alice | md-large | COMPLETED | 2024-02-10 00:00 | 2-00:00:00 | 768.00 |" in (
        markdown
    )
    assert "| --- | ---: | ---: | ---: | ---: |" in markdown


SRC_HREF = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def assert_self_contained(html: str) -> None:
    assert "<svg" in html or "data:image/png" in html
    assert not SRC_HREF.search(html)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html


def test_html_is_one_self_contained_page_with_charts(report: GrantReport) -> None:
    html = grant_render.render(report, "html")
    assert_self_contained(html)
    assert html.count("<svg") == 2  # monthly bars, burn-down
    assert "<?xml" not in html
    assert "DOCTYPE svg" not in html
    assert "physics: core-hours by month and user" in html
    assert "<dt>core-hours</dt><dd>1,380.00</dd>" in html
    # Values from the ledger are escaped, not markup.
    assert "<td>md-large</td>" in html


def test_html_needs_matplotlib_and_says_how_to_install_it(
    report: GrantReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'hpcbridge\[charts\]'"):
        grant_render.render(report, "html")
    assert "1,380.00" in grant_render.render(report, "markdown")  # other formats need none


def test_an_empty_period_is_a_valid_report_that_says_so(ledger: Ledger) -> None:
    load(ledger)
    report = grant_report(ledger, "physics", t(9, 1, year=2023), t(10, 1, year=2023), now=NOW)
    assert report.empty
    assert report.burn is not None  # the grant covers September; none of it used yet
    assert [used for _, used in report.burn.points] == [0.0] * 4  # July to October 1st
    assert report.burn.burndown is None
    assert "No usage in this range." in grant_render.render(report, "markdown")
    html = grant_render.render(report, "html")
    assert "No usage in this range." in html
    assert html.count("<svg") == 1  # the burn-down only
    document = json.loads(grant_render.render(report, "json"))
    assert document["empty"] is True
    assert document["users"] == []
    assert document["top_jobs"] == []
    rows = list(csv.DictReader(io.StringIO(grant_render.render(report, "csv"))))
    assert [row["section"] for row in rows] == ["month", "allocation"]
    assert rows[1]["used_core_hours"] == "0.0"


def test_an_unknown_account_is_named_with_some_known_ones(ledger: Ledger) -> None:
    load(ledger)
    with pytest.raises(ValueError, match=r"account 'physic' is not in the ledger; it has "
                       r"chemistry, physics$"):  # fmt: skip
        grant_report(ledger, "physic", START, END)


# -- the command ----------------------------------------------------------------------------


def grant_command(ledger_url: str, *options: str) -> list[str]:
    return ["report", "grant", "--account", "physics", "--from", "2024-01-01",
            "--to", "2024-04-01", "--ledger", ledger_url, *options]  # fmt: skip


def test_cli_writes_every_format_to_stdout_or_out(ledger_url: str, tmp_path: Path) -> None:
    with Ledger.open(ledger_url) as opened:
        load(opened)
    reports = tmp_path / "reports"
    reports.mkdir()
    runner = CliRunner()
    for output_format in grant_render.FORMATS:
        printed = runner.invoke(main, grant_command(ledger_url, "--format", output_format))
        assert printed.exit_code == 0, printed.output
        out = reports / f"report.{output_format}"
        written = runner.invoke(
            main, grant_command(ledger_url, "--format", output_format, "--out", str(out))
        )
        assert written.exit_code == 0, written.output
        assert written.stdout_bytes == b""
        assert out.read_bytes() == printed.stdout_bytes
    assert_self_contained((reports / "report.html").read_text())
    assert sorted(p.name for p in reports.iterdir()) == [
        "report.csv",
        "report.html",
        "report.json",
        "report.markdown",
    ]  # fmt: skip  (no temporary files left behind)


def test_cli_failures_leave_out_as_it_was(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(ledger_url) as opened:
        load(opened)
    reports = tmp_path / "reports"
    reports.mkdir()
    out = reports / "report.html"
    out.write_text("last month's report")
    runner = CliRunner()
    unknown = grant_command(ledger_url, "--out", str(out))
    unknown[unknown.index("physics")] = "nobody"
    result = runner.invoke(main, unknown)
    assert result.exit_code == 2
    assert "'--account': account 'nobody' is not in the ledger; it has chemistry, physics" in (
        result.output
    )
    backwards = grant_command(ledger_url, "--to", "2023-01-01", "--out", str(out))
    assert runner.invoke(main, backwards).exit_code == 2
    missing_dir = tmp_path / "no" / "such" / "report.html"
    result = runner.invoke(main, grant_command(ledger_url, "--out", str(missing_dir)))
    assert result.exit_code == 2
    assert f"cannot write {missing_dir}" in result.output
    # A failure after the ledger was read, while rendering: charts without matplotlib.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = runner.invoke(main, grant_command(ledger_url, "--out", str(out)))
    assert result.exit_code == 3
    assert "pip install 'hpcbridge[charts]'" in result.output
    fresh = reports / "fresh.html"
    assert runner.invoke(main, grant_command(ledger_url, "--out", str(fresh))).exit_code == 3
    assert out.read_text() == "last month's report"
    assert sorted(p.name for p in reports.iterdir()) == ["report.html"]  # no fresh, no temp


def test_cli_on_a_missing_ledger_is_a_ledger_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'ledger.sqlite'}"
    result = CliRunner().invoke(main, grant_command(url))
    assert result.exit_code == 8, result.output


def test_help_loads_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from hpcbridge.cli.main import main\n"
        "try:\n"
        "    main(['report', 'grant', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('matplotlib', 'numpy', 'sqlalchemy', 'networkx', 'paramiko')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "--format [html|markdown|csv|json]" in result.stdout
    assert result.stdout.strip().endswith("[]")


# -- an SWF trace in the SDSC DataStar format -------------------------------------------------

SWF_START = 1078605840  # 2004-03-06 20:44:00 UTC: the SDSC-DS-2004 trace's UnixStartTime
SWF = f"""; Version: 2.2
; Computer: IBM p655/p690 (DataStar), hand-written jobs in its format
; UnixStartTime: {SWF_START}
; TimeZoneString: US/Pacific
; Queue:  3  normal
;
"""
# job submit wait run alloc cpu mem req reqtime reqmem status user group exe queue part prec think
SWF_JOBS = """\
 1001  2000000   600   7200   64  6500.0  -1   64  14400  -1  1  2 22 -1  3  2 -1 -1
 1002  2100000   100  86400  128 80000.0  -1  128  86400  -1  1  5 22 -1  3  2 -1 -1
 1003  2200000    50   3600    8  3500.0  -1    8   3600  -1  0  2 22 -1  3  2 -1 -1
 1004  2300000    -1     -1   32      -1  -1   32   3600  -1  5  2 22 -1  3  2 -1 -1
 1005  2400000    10  36000   16     -1  -1   16  36000  -1  1  7 14 -1  3  2 -1 -1
 1006  4900000   100   7200  256  7000.0  -1  256   7200  -1  1  5 22 -1  3  2 -1 -1
"""


def test_sdsc_ds_trace_renders_an_html_grant_report_matching_the_ledger(
    ledger_url: str, tmp_path: Path
) -> None:
    trace = tmp_path / "SDSC-DS-sample.swf"
    trace.write_text(SWF + SWF_JOBS)
    runner = CliRunner()
    imported = runner.invoke(main, ["ledger", "import-swf", str(trace), "--ledger", ledger_url])
    assert imported.exit_code == 0, imported.output
    start, end = datetime(2004, 3, 1, tzinfo=UTC), datetime(2004, 6, 1, tzinfo=UTC)
    with Ledger.open(ledger_url) as opened:
        opened.set_allocation("g22", start, datetime(2005, 3, 1, tzinfo=UTC), 100_000.0)
        with opened.transaction(read_only=True) as connection:
            by_user = dict(
                connection.execute(
                    text(
                        "SELECT u.name, SUM(j.alloc_cpus * (j.end_at - j.start_at)) / 3600.0 "
                        "FROM job_attempts j JOIN accounts a ON a.id = j.account_id "
                        "JOIN users u ON u.id = j.user_id "
                        "WHERE a.name = 'g22' AND j.start_at >= :first AND j.end_at <= :last "
                        "GROUP BY u.name"
                    ),
                    {"first": int(start.timestamp()), "last": int(end.timestamp())},
                ).all()
            )
            jobs = connection.scalar(
                text(
                    "SELECT COUNT(*) FROM job_attempts j JOIN accounts a ON a.id = j.account_id "
                    "WHERE a.name = 'g22' AND j.start_at >= :first AND j.start_at < :last"
                ),
                {"first": int(start.timestamp()), "last": int(end.timestamp())},
            )
    # g22 (SWF group 22): u2 ran 1001 and 1003, u5 ran 1002 (across March/April) and 1006;
    # 1004 never ran and 1005 is another group's.
    assert {name: float(hours) for name, hours in by_user.items()} == {
        "u2": 64 * 2 + 8 * 1.0,
        "u5": 128 * 24 + 256 * 2.0,
    }
    assert jobs == 4
    out = tmp_path / "g22.html"
    result = runner.invoke(
        main,
        ["report", "grant", "--account", "g22", "--from", "2004-03", "--to", "2004-06",
         "--out", str(out), "--ledger", ledger_url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert_self_contained(html)
    total = sum(float(hours) for hours in by_user.values())
    assert f"<dt>core-hours</dt><dd>{total:,.2f}</dd>" in html
    assert f"<dt>jobs started</dt><dd>{jobs}</dd>" in html
    for user, hours in by_user.items():
        assert re.search(rf"<tr><td>{user}</td><td class=\"n\">{float(hours):,.2f}</td>", html)
    assert "<td>2004-03</td>" in html
    assert "<td>2004-05</td>" in html
