"""SWF traces into the ledger: field mapping, gzip, malformed lines, partial runs, the CLI.

The traces are small and written here, so every expected number can be worked out by hand.
"""

from __future__ import annotations

import gzip
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.errors import TraceError
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord
from hpcbridge.ledger.schema import Cluster, JobAttempt
from hpcbridge.ledger.sources.swf import AT_SUBMIT, SwfTrace, import_swf
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import usage_report

START = 1078605840  # 2004-03-06 20:44:00 UTC, as in the SDSC DataStar trace
HEADER = f"""; Version: 2.2
; Computer: test machine
; UnixStartTime: {START}
; TimeZone: -28800
; TimeZoneString: US/Pacific
; MaxQueues: 2
; Queue:  0  interactive
; Queue:  3  normal           (p655 / 18hr)
;
"""
# job submit wait run alloc cpu mem req reqtime reqmem status user group exe queue part prec think
JOBS = """\
   21  100  50  3600  32 969.56  2048  32 7200  4096  1 14 10 -1  3  2 -1 -1
   22  200  -1    -1  64     -1    -1  64 86400   -1  5 11  1 -1  0  2 -1 -1
   23  300  10   600  -1     -1    -1   8 3600    -1  0 -1 -1 -1  9  2 -1 -1
   24  400   0     0   1      0     0   1   60    -1 -1  7  7 -1 -1 -1 -1 -1
"""


def at(offset: int) -> datetime:
    return datetime.fromtimestamp(START + offset, UTC)


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def read(path: Path, **options: int) -> tuple[list[AttemptRecord], SwfTrace]:
    trace = SwfTrace(path, **options)
    return list(trace.records()), trace


EXPECTED = [
    AttemptRecord(
        job_id="21",
        attempt=1,
        state=JobState.COMPLETED,
        user="u14",
        account="g10",
        partition="normal",
        submit=at(100),
        start=at(150),
        end=at(3750),
        elapsed_s=3600,
        alloc_cpus=32,
        req_walltime_s=7200,
        req_mem_mb=128,  # 4096 KB per processor x 32 requested
        max_rss_mb=64.0,  # 2048 KB per processor x 32 allocated
        cpu_time_s=969.56 * 32,  # the average per processor x processors
    ),
    # Cancelled before it ran, for how long unknown: no start or end (a start alone would
    # read as still running).
    AttemptRecord(
        job_id="22",
        attempt=1,
        state=JobState.CANCELLED,
        user="u11",
        account="g1",
        partition="interactive",
        submit=at(200),
        alloc_cpus=64,
        req_walltime_s=86400,
    ),
    # Failed; allocated processors unknown, so the requested 8 stand in; queue 9 has no name.
    AttemptRecord(
        job_id="23",
        attempt=1,
        state=JobState.FAILED,
        partition="9",
        submit=at(300),
        start=at(310),
        end=at(910),
        elapsed_s=600,
        alloc_cpus=8,
        req_walltime_s=3600,
    ),
    AttemptRecord(
        job_id="24",
        attempt=1,
        state=JobState.UNKNOWN,
        user="u7",
        account="g7",
        submit=at(400),
        start=at(400),
        end=at(400),
        elapsed_s=0,
        alloc_cpus=1,
        req_walltime_s=60,
        max_rss_mb=0.0,
        cpu_time_s=0.0,
    ),
]


@pytest.mark.parametrize("name", ["trace.swf", "trace.swf.gz", "gzipped-but-named.swf"])
def test_fields_map_to_attempts_in_plain_and_gzip_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.startswith("gzipped"):
        path.write_bytes(gzip.compress((HEADER + JOBS).encode()))
    else:
        write(path, HEADER + JOBS)
    records, trace = read(path)
    assert records == EXPECTED
    assert records[0].array_index == NOT_AN_ARRAY
    assert trace.bad_lines == []
    assert trace.records_read == 4
    assert trace.cluster_name == ("gzipped-but-named" if name.startswith("gzipped") else "trace")


def test_a_job_cancelled_in_the_queue_leaves_it_when_its_wait_ends(tmp_path: Path) -> None:
    """As sacct records a job cancelled while pending: a run of no length at the moment it
    left the queue, so the queue at any moment can be read from the ledger."""
    line = "   25  500  120  -1  16  -1  -1  16 3600  -1  5 11  1 -1  3  2 -1 -1\n"
    (record,), _ = read(write(tmp_path / "t.swf", HEADER + line))
    assert (record.state, record.submit) == (JobState.CANCELLED, at(500))
    assert (record.start, record.end, record.elapsed_s) == (at(620), at(620), 0)


def test_malformed_lines_are_skipped_and_named(tmp_path: Path) -> None:
    broken = [
        "   30  100  50  3600  32 1 1 32 7200",  # line 10: too few fields
        "   31  100  50  abc  32 1 1 32 7200 -1 1 1 1 -1 3 2 -1 -1",  # 11: not a number
        "   32  100  -5  3600  32 1 1 32 7200 -1 1 1 1 -1 3 2 -1 -1",  # 12: negative
        "   33  100  50  3600  2.5 1 1 32 7200 -1 1 1 1 -1 3 2 -1 -1",  # 13: half a processor
        "   34  100  50  nan  32 1 1 32 7200 -1 1 1 1 -1 3 2 -1 -1",  # 14: NaN
        "   -1  100  50  3600  32 1 1 32 7200 -1 1 1 1 -1 3 2 -1 -1",  # 15: no job number
        "   35  1e12  50  3600  32 1 1 32 7200 -1 1 1 1 -1 3 2 -1 -1",  # 16: 31,000 years
    ]
    path = write(tmp_path / "t.swf", HEADER + "\n".join(broken) + "\n" + JOBS)
    records, trace = read(path)
    assert [r.job_id for r in records] == ["21", "22", "23", "24"]
    assert [str(bad) for bad in trace.bad_lines] == [
        "line 10: 9 fields, an SWF job line has 18",
        "line 11: field 4 (run time) 'abc' is not a number",
        "line 12: field 3 (wait time) '-5' is out of range (-1 for unknown, else 0 or more)",
        "line 13: field 5 (allocated processors) '2.5' is not a whole number",
        "line 14: field 4 (run time) 'nan' is out of range (-1 for unknown, else 0 or more)",
        "line 15: field 1 (job number) is unknown (-1); a job needs its number",
        "line 16: field 2 (submit time) '1e12' is implausibly large (-1 for unknown, else 0 "
        "or more)",
    ]


def test_too_many_malformed_lines_stop_the_import(tmp_path: Path) -> None:
    path = write(tmp_path / "t.swf", HEADER + "a,b,c\n" * 4 + JOBS)
    with pytest.raises(TraceError, match=r"more than 3 malformed job lines.*line 10: 1 fields"):
        read(path, max_bad_lines=3)


def test_records_are_streamed_not_read_ahead(tmp_path: Path) -> None:
    """The first job comes back before the (broken) rest of the file is read."""
    path = write(tmp_path / "t.swf", HEADER + JOBS + "garbage\n" * 500)
    trace = SwfTrace(path, max_bad_lines=10)
    records = trace.records()
    assert next(records).job_id == "21"
    assert 0 < trace.bytes_read <= trace.total_bytes
    with pytest.raises(TraceError, match="more than 10 malformed"):
        list(records)


def test_a_job_line_before_unix_start_time_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.swf", "; Version: 2.2\n" + JOBS)
    with pytest.raises(TraceError, match=r"line 2: a job line before any '; UnixStartTime:'"):
        read(path)


def test_a_bad_unix_start_time_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.swf", "; UnixStartTime: yesterday\n" + JOBS)
    with pytest.raises(TraceError, match="line 1: UnixStartTime 'yesterday' is not a whole"):
        read(path)


def test_a_truncated_gzip_file_is_reported(tmp_path: Path) -> None:
    whole = gzip.compress((HEADER + JOBS * 50).encode())
    path = tmp_path / "t.swf.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TraceError, match=r"t\.swf\.gz: cannot read past line"):
        read(path)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"cannot read the trace .*nothing\.swf"):
        SwfTrace(tmp_path / "nothing.swf")


def test_partial_executions_become_attempts(tmp_path: Path) -> None:
    """Status 2 (continued later) ... then 3 or 4: one job, attempts 1, 2, 3 in file order."""
    lines = """\
   40  0  0 100  4 -1 -1 4 -1 -1 2 1 1 -1 3 2 -1 -1
   41  0  5  10  1 -1 -1 1 -1 -1 1 1 1 -1 3 2 -1 -1
   40  0 200 100  4 -1 -1 4 -1 -1 2 1 1 -1 3 2 -1 -1
   40  0 400  50  4 -1 -1 4 -1 -1 4 1 1 -1 3 2 -1 -1
   42  0  0  10  1 -1 -1 1 -1 -1 1 1 1 -1 3 2 -1 -1
"""
    records, _ = read(write(tmp_path / "t.swf", HEADER + lines))
    assert [(r.job_id, r.attempt, r.state, r.start) for r in records] == [
        ("40", 1, JobState.PREEMPTED, at(0)),
        ("41", 1, JobState.COMPLETED, at(5)),
        ("40", 2, JobState.PREEMPTED, at(200)),
        ("40", 3, JobState.FAILED, at(400)),
        ("42", 1, JobState.COMPLETED, at(0)),
    ]


def test_an_undefined_status_is_unknown_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = "   50 0 0 1 1 -1 -1 1 -1 -1 7 1 1 -1 3 2 -1 -1\n" * 3
    with caplog.at_level(logging.WARNING, logger="hpcbridge.ledger.sources.swf"):
        records, trace = read(write(tmp_path / "t.swf", HEADER + lines))
    assert [r.state for r in records] == [JobState.UNKNOWN] * 3
    assert trace.bad_lines == []
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 't.swf'}: line 10: status 7 is not an SWF status; stored as UNKNOWN "
        "(later lines with it are not reported)"
    ]


def attempt_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(JobAttempt)) or 0


def test_import_writes_rows_once_however_often_it_runs(tmp_path: Path, ledger: Ledger) -> None:
    path = write(tmp_path / "sdsc.swf.gz", HEADER + JOBS)
    assert import_swf(ledger, SwfTrace(path)) == 4
    assert import_swf(ledger, SwfTrace(path)) == 4
    assert attempt_count(ledger) == 4
    with ledger.engine.connect() as connection:
        clusters = connection.execute(select(Cluster.name, Cluster.scheduler)).all()
        sources = connection.scalars(select(JobAttempt.source).distinct()).all()
        cpu = connection.scalar(select(JobAttempt.cpu_time_s).where(JobAttempt.job_id == "21"))
    assert clusters == [("sdsc", "swf")]
    assert sources == ["swf"]
    assert cpu == pytest.approx(969.56 * 32)


def test_cli_imports_and_lists_malformed_lines(tmp_path: Path, ledger_url: str) -> None:
    path = write(tmp_path / "trace.swf", HEADER + "   99 1 2 3\n" + JOBS)
    result = CliRunner().invoke(
        main, ["ledger", "import-swf", str(path), "--cluster", "datastar", "--ledger", ledger_url]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"imported 4 jobs from {path} as cluster 'datastar' into ")
    assert result.stderr == (
        "warning: 1 malformed lines not imported:\n  line 10: 4 fields, an SWF job line has 18\n"
    )
    with Ledger.open(ledger_url) as opened:
        assert attempt_count(opened) == 4


def test_cli_refuses_a_file_that_is_not_swf(tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.csv", "; UnixStartTime: 0\n" + "job,submit,wait\n" * 5)
    ledger_url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    result = CliRunner().invoke(
        main, ["ledger", "import-swf", str(path), "--max-bad-lines", "2", "--ledger", ledger_url]
    )
    assert result.exit_code == 3  # invalid input, like a bad job file
    assert "more than 2 malformed job lines, so this is probably not an SWF trace" in result.stderr


# An HPC2N job 149728 style line: ran 5,000 s on 4 processors, wait unknown (-1); then the
# same trace's ordinary jobs, one of them crossing a month's end (the trace starts on 6
# March 2004: 2,171,760 s later is 1 April 00:00 UTC).
WAIT_UNKNOWN = "  149728  1000  -1  5000   4  -1  -1   4  7200  -1  1  3  2 -1  3  2 -1 -1\n"
ACROSS_MONTHS = "  30  2171000  60  7200   16  -1  -1  16  7200  -1  1  3  2 -1  3  2 -1 -1\n"


def charged_in_the_trace(text: str) -> int:
    """Straight from the job lines: run time (4) x processors (5, else 8), where both are
    known; what the trace says each job was charged."""
    total = 0
    for line in text.split("\n"):
        fields = line.split()
        if not fields or line.startswith(";"):
            continue
        run, alloc, requested = float(fields[3]), int(fields[4]), int(fields[7])
        processors = alloc if alloc >= 0 else requested
        if run >= 0 and processors >= 0:
            total += round(run) * processors
    return total


def test_usage_is_run_time_times_processors_wait_unknown_included(
    tmp_path: Path, ledger: Ledger
) -> None:
    text = HEADER + JOBS + WAIT_UNKNOWN + ACROSS_MONTHS
    path = write(tmp_path / "hpc2n.swf", text)
    trace = SwfTrace(path)
    assert import_swf(ledger, trace) == 6
    expected = charged_in_the_trace(text)
    assert expected == 32 * 3600 + 8 * 600 + 4 * 5000 + 16 * 7200
    first, last = datetime(2004, 3, 1, tzinfo=UTC), datetime(2004, 5, 1, tzinfo=UTC)
    for by in (["account"], ["month"]):
        report = usage_report(ledger, by, first, last, now=last)
        assert report.total.core_hours * 3600 == pytest.approx(expected, abs=1e-6)
    by_month = usage_report(ledger, ["month"], first, last, now=last)
    # Job 30 started at 2,171,060 s: 700 of its 7,200 s fall in March.
    assert [(row.keys[0], row.usage.core_hours * 3600) for row in by_month.rows] == [
        ("2004-03", pytest.approx(expected - 16 * 6500)),
        ("2004-04", pytest.approx(16 * 6500)),
    ]
    with ledger.engine.connect() as connection:
        placed = connection.execute(
            select(
                JobAttempt.submit_at, JobAttempt.start_at, JobAttempt.end_at, JobAttempt.reason
            ).where(JobAttempt.job_id == "149728")
        ).one()
    assert placed == (at(1000), at(1000), at(6000), AT_SUBMIT)
    assert trace.placed_at_submit == 1


def test_cli_says_how_many_jobs_were_placed_at_their_submit_time(
    tmp_path: Path, ledger_url: str
) -> None:
    path = write(tmp_path / "trace.swf", HEADER + JOBS + WAIT_UNKNOWN)
    result = CliRunner().invoke(main, ["ledger", "import-swf", str(path), "--ledger", ledger_url])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported 5 jobs")
    assert result.stderr == (
        "note: 1 jobs with an unknown wait time (-1) were charged from their submit time\n"
    )
