"""The sacct source: windows and batching with a fake transport, then jobs on the real Slurm.

The real-cluster test runs every kind of ending at once (the TIMEOUT job alone needs 60-90 s)
and compares the source's AttemptRecords with what ``sacct`` itself prints in the test.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpcbridge import JobState, LocalTransport
from hpcbridge.backends.slurm import cli
from hpcbridge.backends.slurm.parse import slurm_state
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord
from hpcbridge.ledger.sources.base import Window
from hpcbridge.ledger.sources.slurm import SacctSource
from hpcbridge.ledger.store import Ledger
from hpcbridge.ledger.usage import usage_report
from hpcbridge.transports.fake import FakeTransport

DATA = Path(__file__).parents[1] / "data" / "slurm" / "sacct_ledger.txt"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_windows_are_bounded_and_start_at_the_watermark_less_the_overlap() -> None:
    source = SacctSource(FakeTransport(lambda argv, stdin: ""), window=timedelta(hours=6))
    first = source.windows(None, NOW)
    assert len(first) == 30 * 4
    assert first[0].start == NOW - timedelta(days=30)
    assert first[-1].end == NOW
    assert all(w.complete and w.end - w.start <= timedelta(hours=6) for w in first)
    later = source.windows(NOW - timedelta(minutes=10), NOW)
    assert later == [Window(NOW - timedelta(minutes=70), NOW, True)]
    assert source.windows(NOW + timedelta(hours=2), NOW) == []


def test_jobs_submitted_before_the_window_are_read_again_whole_in_batches() -> None:
    window_output = DATA.read_text().replace("|", cli.FIELD_SEPARATOR)

    def sacct(argv: list[str], stdin: str | None) -> str:
        return window_output if any(a.startswith("--state=") for a in argv) else ""

    transport = FakeTransport(sacct)
    source = SacctSource(transport, jobs_per_call=2)
    window = Window(datetime(2026, 11, 23, 10, 4, 30, tzinfo=UTC), NOW, True)
    found = source.fetch(window)
    assert [call.env for call in transport.calls] == [cli.UTC_ENV] * 3
    window_call, *history_calls = [call.argv for call in transport.calls]
    assert "--starttime=2026-11-23T10:04:30" in window_call
    assert "--allusers" in window_call
    assert "--duplicates" in window_call
    # Submitted before 10:05:30 (the window's start plus a minute of slack): 101 to 104.
    assert [[a for a in argv if a.startswith("--jobs=")] for argv in history_calls] == [
        ["--jobs=101,102"],
        ["--jobs=103,104"],
    ]
    assert not any(a.startswith("--starttime") for argv in history_calls for a in argv)
    # The whole-job readings came back empty here, so the window's own runs are numbered.
    keys = {(r.job_id, r.array_index, r.attempt) for r in found}
    assert ("104", NOT_AN_ARRAY, 3) in keys
    assert ("105", 2, 1) in keys
    assert len(keys) == len(found) == 8


# ---- the real cluster ------------------------------------------------------------------------


def sbatch(*options: str, script: str) -> str:
    argv = ["sbatch", "--parsable", "--output=/dev/null", *options, f"--wrap={script}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def squeue_state(job_id: str) -> list[str]:
    argv = ["squeue", "--noheader", f"--jobs={job_id}", "--format=%T %r"]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.split()


def wait_state(job_id: str, *wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while squeue_state(job_id)[: len(wanted)] != list(wanted):
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} never reached {wanted}; now {squeue_state(job_id)}")
        time.sleep(0.2)


def requeue_and_release(job_id: str) -> None:
    """Requeue a running job and start it again at once, not two minutes later.

    Releasing it while the old run is still being cleaned up makes the new launch fail, so it
    first sits on BeginTime for a moment (as the contract suite does).
    """
    wait_state(job_id, "RUNNING")
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_state(job_id, "PENDING", "BeginTime")
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"], check=True)


def sacct_rows(job_ids: list[str]) -> list[dict[str, str]]:
    """What sacct itself says about the jobs' allocations, one row per run, oldest first."""
    fields = "JobID,State,Submit,Start,End,ElapsedRaw,AllocCPUS,ExitCode,AllocTRES,TotalCPU"
    argv = ["sacct", "--duplicates", "--allocations", "--parsable2", "--noheader"]
    argv += [f"--jobs={','.join(job_ids)}", f"--format={fields}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env={"TZ": "UTC"})
    names = fields.split(",")
    return [dict(zip(names, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


def sacct_time(text: str) -> datetime | None:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if text[:1].isdigit() else None


def assert_matches_sacct(record: AttemptRecord, row: dict[str, str]) -> None:
    assert record.state is slurm_state(row["State"])
    assert record.submit == sacct_time(row["Submit"])
    assert record.end == sacct_time(row["End"])
    ran = bool(row["AllocTRES"])
    assert record.start == (sacct_time(row["Start"]) if ran else None)
    assert record.elapsed_s == int(row["ElapsedRaw"])
    assert record.alloc_cpus == int(row["AllocCPUS"])
    code, signal = row["ExitCode"].split(":")
    assert (record.exit_code, record.exit_signal) == (int(code), int(signal))


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_every_kind_of_ending_on_the_real_cluster() -> None:
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    timeout = sbatch("--time=1", script="sleep 300")  # TIMEOUT 60-90 s after it starts
    done = sbatch(script="srun true")
    failed = sbatch(script="exit 3")
    pending = sbatch("--begin=now+1hour", script="true")
    held = sbatch("--hold", script="true")  # never eligible: missed without --state
    running = sbatch(script="sleep 300")
    requeued = sbatch("--requeue", script="srun sleep 1; sleep 6")
    array = sbatch("--array=1-3", script="true")
    wait_state(running, "RUNNING")
    subprocess.run(["scancel", pending, held, running], check=True)
    requeue_and_release(requeued)
    requeue_and_release(requeued)
    ours = [timeout, done, failed, pending, held, running, requeued, array]
    deadline = time.monotonic() + 150
    while any(squeue_state(job_id) for job_id in ours):
        assert time.monotonic() < deadline, "the jobs did not all end"
        time.sleep(2)
    time.sleep(1)  # let slurmdbd store the last end records

    source = SacctSource(LocalTransport())
    window = Window(began, datetime.now(UTC) + timedelta(seconds=1), True)
    found = {
        (r.job_id, r.array_index, r.attempt): r for r in source.fetch(window) if r.job_id in ours
    }
    rows = sacct_rows(ours)
    by_job: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_job.setdefault(row["JobID"], []).append(row)

    def only(job_id: str, index: int = NOT_AN_ARRAY) -> AttemptRecord:
        spec = job_id if index == NOT_AN_ARRAY else f"{job_id}_{index}"
        (row,) = by_job[spec]
        record = found[(job_id, index, 1)]
        assert_matches_sacct(record, row)
        return record

    assert only(done).state is JobState.COMPLETED
    assert only(done).cpu_time_s is not None
    assert (only(failed).state, only(failed).exit_code) == (JobState.FAILED, 3)
    for never_ran in (pending, held):
        assert only(never_ran).state is JobState.CANCELLED
        assert (only(never_ran).start, only(never_ran).node_list) == (None, None)
    assert only(running).state is JobState.CANCELLED
    assert only(running).start is not None
    assert (only(timeout).state, only(timeout).req_walltime_s) == (JobState.TIMEOUT, 60)
    for index in (1, 2, 3):
        assert only(array, index).state is JobState.COMPLETED

    runs = [found[(requeued, NOT_AN_ARRAY, n)] for n in (1, 2, 3)]
    assert (requeued, NOT_AN_ARRAY, 4) not in found
    for record, row in zip(runs, by_job[requeued], strict=True):
        assert_matches_sacct(record, row)
    assert [r.state for r in runs] == [JobState.REQUEUED, JobState.REQUEUED, JobState.COMPLETED]
    assert len(found) == len(rows)

    # A later window that holds only the last run, starting after its first step ended: the
    # run keeps number 3 and the usage of the step that ended before the window.
    last = runs[2]
    assert last.start is not None
    assert last.end is not None
    later = Window(last.start + timedelta(seconds=3), last.end + timedelta(seconds=1), True)
    again = [r for r in source.fetch(later) if r.job_id == requeued]
    assert again == [last]


@pytest.fixture(scope="module")
def suspended_run() -> tuple[list[AttemptRecord], list[dict[str, str]]]:
    """A 2-CPU job suspended for a while as it runs, and a plain one, on the real cluster:
    the source's records of them and sacct's own rows. Slurm's ElapsedRaw leaves out the
    suspended time; end - start does not."""
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    suspended = sbatch("--cpus-per-task=2", script="sleep 6")
    plain = sbatch(script="sleep 1")
    wait_state(suspended, "RUNNING")
    subprocess.run(["scontrol", "suspend", suspended], check=True)
    wait_state(suspended, "SUSPENDED")
    time.sleep(4)  # the suspended time itself, not a wait for anything
    subprocess.run(["scontrol", "resume", suspended], check=True)
    ours = [suspended, plain]
    deadline = time.monotonic() + 120
    while any(squeue_state(job_id) for job_id in ours) or any(
        not sacct_time(row["End"]) for row in sacct_rows(ours)
    ):
        assert time.monotonic() < deadline, "the jobs did not all end"
        time.sleep(0.5)
    window = Window(began, datetime.now(UTC) + timedelta(seconds=1), True)
    records = [r for r in SacctSource(LocalTransport()).fetch(window) if r.job_id in ours]
    return records, sacct_rows(ours)


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_usage_is_elapsed_raw_times_alloc_cpus_on_the_real_cluster(
    suspended_run: tuple[list[AttemptRecord], list[dict[str, str]]], ledger: Ledger
) -> None:
    records, rows = suspended_run
    charged = sum(int(row["ElapsedRaw"]) * int(row["AllocCPUS"]) for row in rows)
    spanned = 0
    for row in rows:
        start, end = sacct_time(row["Start"]), sacct_time(row["End"])
        assert start is not None
        assert end is not None
        spanned += int(row["AllocCPUS"]) * int((end - start).total_seconds())
    assert charged < spanned  # the suspended seconds: what this test is about
    ledger.upsert_attempts("slurm-test", "slurm", records, source="sacct")
    first = min(r.start for r in records if r.start) - timedelta(days=40)
    last = datetime.now(UTC) + timedelta(days=1)
    for by in (["account"], ["user", "month"]):
        report = usage_report(ledger, by, first, last, now=last)
        assert report.total.core_hours * 3600 == pytest.approx(charged, abs=1e-6)
