"""The sacct parsers of the ledger, on a small hand-made file in the shape of Slurm 22.05's output.

tests/data/slurm/sacct_ledger.txt uses "|" between fields for readability; sacct is asked for
the unit separator, which the loader swaps in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpcbridge import JobState, SchedulerError
from hpcbridge.backends.slurm import accounting, cli
from hpcbridge.backends.slurm.accounting import (
    SacctRun,
    number_runs,
    parse_runs,
    submitted_before,
)
from hpcbridge.jobs.records import NOT_AN_ARRAY, AttemptRecord, StepRecord

DATA = Path(__file__).parents[1] / "data" / "slurm" / "sacct_ledger.txt"


def sacct_text() -> str:
    return DATA.read_text().replace("|", cli.FIELD_SEPARATOR)


def records() -> dict[tuple[str, int, int], AttemptRecord]:
    runs = parse_runs(sacct_text())
    numbers = number_runs(runs)
    found = [run.record(numbers[run.db_index]) for run in runs]
    return {(r.job_id, r.array_index, r.attempt): r for r in found}


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, second, tzinfo=UTC)


def test_fixture_has_the_fields_the_parser_reads() -> None:
    widths = {line.count(cli.FIELD_SEPARATOR) + 1 for line in sacct_text().splitlines()}
    assert widths == {len(cli.SACCT_LEDGER_FIELDS)}


def test_a_completed_job_with_its_steps_folded_in_and_its_srun_step_kept() -> None:
    job = records()[("101", NOT_AN_ARRAY, 1)]
    assert job == AttemptRecord(
        job_id="101",
        attempt=1,
        state=JobState.COMPLETED,
        name="prep",
        user="ann",
        account="physics",
        partition="debug",
        qos="normal",
        submit=at(10, 0),
        eligible=at(10, 0),
        start=at(10, 0, 5),
        end=at(10, 10, 5),
        elapsed_s=600,
        exit_code=0,
        exit_signal=0,
        reason=None,
        node_list="node[01-02]",
        node_count=2,
        alloc_cpus=8,
        alloc_gpus=0,
        tres="billing=8,cpu=8,mem=4000M,node=2",
        req_walltime_s=3600,
        req_mem_mb=4000,
        max_rss_mb=1536.0,  # the largest step: extern's 1.50G, over batch's 3104K
        cpu_time_s=3723.0,  # TotalCPU "01:02:03" of the job line, the sum of its steps
        steps=(  # step 0 only: batch and extern repeat the job's own line
            StepRecord(
                step_id="0",
                state=JobState.COMPLETED,
                name="solver",
                start=at(10, 0, 6),
                end=at(10, 10),
                elapsed_s=594,
                exit_code=0,
                exit_signal=0,
                node_list="node[01-02]",
                alloc_cpus=8,
                alloc_gpus=0,
                tres="cpu=8,mem=4000M,node=2",
                max_rss_mb=0.5,
                cpu_time_s=3713.0,
            ),
        ),
    )


def test_failed_job_exit_code_and_zero_rss() -> None:
    job = records()[("102", NOT_AN_ARRAY, 1)]
    assert (job.state, job.exit_code, job.exit_signal) == (JobState.FAILED, 3, 0)
    assert (job.partition, job.qos, job.req_walltime_s) == ("long", "long", 10080 * 60)
    assert job.max_rss_mb == 0.0
    assert job.cpu_time_s == pytest.approx(0.004)


def test_a_job_cancelled_before_it_ran_has_no_start() -> None:
    job = records()[("103", NOT_AN_ARRAY, 1)]
    assert job.state is JobState.CANCELLED
    assert job.start is None  # sacct prints Start = End for it; AllocTRES is empty
    assert (job.end, job.elapsed_s, job.node_list) == (at(10, 3), 0, None)
    assert (job.alloc_gpus, job.tres, job.req_walltime_s) == (None, None, None)
    assert job.reason == "BeginTime"
    assert job.eligible == at(11, 2)


def test_requeued_runs_are_numbered_in_order_with_their_own_steps() -> None:
    found = records()
    runs = [found[("104", NOT_AN_ARRAY, n)] for n in (1, 2, 3)]
    assert [r.state for r in runs] == [JobState.REQUEUED, JobState.REQUEUED, JobState.RUNNING]
    assert [r.start for r in runs] == [at(10, 4, 1), at(10, 7, 1), at(10, 10, 1)]
    assert [r.max_rss_mb for r in runs] == [pytest.approx(2000 / 1024), 2500 / 1024, None]
    assert runs[2].end is None


def test_array_tasks_and_the_pending_remainder() -> None:
    found = records()
    first, second = found[("105", 1, 1)], found[("105", 2, 1)]
    assert (first.alloc_gpus, first.req_mem_mb) == (1, 1400)  # old-style "700Mc" x 2 CPUs
    assert (second.alloc_gpus, second.req_mem_mb) == (2, 1024)  # old-style "1Gn" x 1 node
    assert not [key for key in found if key[0] == "105" and key[1] not in (1, 2)]


def test_numbers_follow_db_index_not_output_order() -> None:
    runs = parse_runs(sacct_text())
    numbers = number_runs(reversed(runs))
    assert [numbers[index] for index in (310, 315, 320)] == [1, 2, 3]
    assert numbers[301] == 1


def test_runs_submitted_before_a_moment() -> None:
    runs = parse_runs(sacct_text())
    assert submitted_before(runs, at(10, 4, 30)) == ["101", "102", "103", "104"]
    assert submitted_before(runs, at(10, 0)) == []


def test_malformed_output_is_an_error() -> None:
    with pytest.raises(SchedulerError, match="without a DBIndex"):
        parse_runs("garbage\n")
    short = SacctRun(1, "1", NOT_AN_ARRAY, "1", cli.FIELD_SEPARATOR.join(["1", "1", "x"]))
    with pytest.raises(SchedulerError, match="expected 23 fields"):
        short.record(1)
    assert parse_runs("\n  \n") == []


def test_an_unreadable_size_is_left_unknown_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One odd value (seen once on the test cluster: "16?") must not stop a whole sync."""
    # Sizes are parsed once per process: forget any "16?" a real-cluster sync in this worker
    # (test_allocation_steps) has already warned about.
    accounting._megabytes.cache_clear()
    accounting._requested_memory.cache_clear()
    lines = sacct_text().splitlines()
    job = next(line for line in lines if line.startswith(f"102{cli.FIELD_SEPARATOR}"))
    fields = job.split(cli.FIELD_SEPARATOR)
    fields[cli.SACCT_LEDGER_FIELDS.index("ReqMem")] = "16?"
    step = next(line for line in lines if line.startswith(f"102.batch{cli.FIELD_SEPARATOR}"))
    step_fields = step.split(cli.FIELD_SEPARATOR)
    step_fields[cli.SACCT_LEDGER_FIELDS.index("MaxRSS")] = "3?"
    output = "\n".join(cli.FIELD_SEPARATOR.join(f) for f in (fields, step_fields))
    [run] = parse_runs(output)
    record = run.record(1)
    assert (record.req_mem_mb, record.max_rss_mb) == (None, None)
    assert record.state is JobState.FAILED
    assert "'16?'" in caplog.text
    assert "'3?'" in caplog.text
