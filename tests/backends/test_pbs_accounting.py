"""PBS accounting logs: one attempt per run, on the real sample and on small built logs."""

from __future__ import annotations

from pathlib import Path

from hpcbridge import JobState
from hpcbridge.backends.pbs import accounting


def attempts_of(text: str) -> list[accounting.Attempt]:
    return list(accounting.attempts(accounting.read_records(text.splitlines())))


def test_real_log_keeps_every_attempt(pbs_reference: Path) -> None:
    with (pbs_reference / "accounting_log_sample.txt").open() as log:
        found = list(accounting.attempts(accounting.read_records(log)))
    by_job: dict[str, list[accounting.Attempt]] = {}
    for attempt in found:
        by_job.setdefault(attempt.job_id, []).append(attempt)
    rerun = by_job["1.vm"]
    assert [(a.attempt, a.state, a.exit_status) for a in rerun] == [
        (1, JobState.REQUEUED, -11),
        (2, JobState.COMPLETED, 0),
    ]
    assert rerun[1].resources_used["walltime"] == "00:00:45"
    assert rerun[1].resource_list["walltime"] == "00:20:00"
    assert by_job["7.vm"][0].state is JobState.FAILED
    assert by_job["9.vm"][0].state is JobState.TIMEOUT
    assert by_job["5.vm"][0].state is JobState.CANCELLED  # qdel while running: D, then E 271
    assert by_job["6.vm"][0].state is JobState.CANCELLED  # qdel while queued: D only
    assert by_job["6.vm"][0].start is None
    assert by_job["8.vm"][0].state is JobState.CANCELLED  # A: deleted, its parent failed
    assert {a.job_id for a in found} >= {"10[1].vm", "10[2].vm", "10[3].vm"}


LOG = """\
11/23/2026 10:00:00;Q;1.srv;user=ann group=g jobname="two words" queue=workq ctime=1795428000 qtime=1795428000 etime=1795428000 Resource_List.ncpus=4
11/23/2026 10:00:01;S;1.srv;user=ann jobname="two words" queue=workq qtime=1795428000 start=1795428001 exec_host=n1/0*4 Resource_List.ncpus=4
garbage line without fields
11/23/2026 10:05:00;R;1.srv;user=ann jobname="two words" start=1795428001 end=1795428300 Exit_status=-11 resources_used.walltime=00:04:59 run_count=1
11/23/2026 10:05:02;S;1.srv;user=ann jobname="two words" start=1795428302 exec_host=n2/0*4
11/23/2026 10:09:00;E;1.srv;user=ann jobname="two words" start=1795428302 end=1795428540 Exit_status=0 resources_used.walltime=00:03:58 run_count=2
11/23/2026 10:10:00;S;2.srv;user=bob jobname=long start=1795428600
"""


def test_built_log_with_rerun_and_a_running_job() -> None:
    first, second, still_running = attempts_of(LOG)
    assert (first.attempt, first.state, first.name) == (1, JobState.REQUEUED, "two words")
    assert first.resources_used == {"walltime": "00:04:59"}
    assert (second.attempt, second.state, second.exec_host) == (2, JobState.COMPLETED, "n2/0*4")
    assert (still_running.job_id, still_running.state, still_running.end) == (
        "2.srv",
        JobState.RUNNING,
        None,
    )


def test_malformed_lines_are_skipped() -> None:
    assert accounting.parse_line("") is None
    assert accounting.parse_line("13/45/2026 99:00:00;E;1.srv;x=1") is None
    record = accounting.parse_line(
        "11/23/2026 12:15:00;A;8.vm;Job deleted as result of dependency on job 7.vm"
    )
    assert record is not None
    assert record.message.startswith("Job deleted")


def test_numbers_from_run_count_and_deletions_from_their_q_record(pbs_reference: Path) -> None:
    with (pbs_reference / "accounting_log_sample.txt").open() as log:
        found = {
            (a.job_id, a.attempt): a for a in accounting.attempts(accounting.read_records(log))
        }
    assert not [job_id for job_id, _ in found if "[]" in job_id]  # subjobs are the runs
    assert found[("1.vm", 2)].number_known
    aborted = found[("8.vm", 1)]  # A record: deleted because its parent failed, never ran
    assert (aborted.state, aborted.name, aborted.queue) == (
        JobState.CANCELLED,
        "dep_child",
        "workq",
    )
    assert aborted.eligible is None  # etime=0: never eligible
    assert aborted.start is None


def test_a_run_whose_job_is_not_in_view_is_numbered_by_guess() -> None:
    log = LOG.splitlines()
    running = attempts_of("\n".join(log[-1:]))  # 2.srv: an S record and nothing before it
    assert [(a.job_id, a.attempt, a.number_known) for a in running] == [("2.srv", 1, False)]
    ended = attempts_of("\n".join(log[3:6]))  # 1.srv from its R record on: run_count rules
    assert [(a.attempt, a.number_known) for a in ended] == [(1, True), (2, True)]


def test_jobs_without_an_account_are_charged_to_none(pbs_reference: Path) -> None:
    """qsub without -A: PBS records ``project=_pbs_project_default``, its own placeholder,
    which is no account (reported as Slurm jobs without one are)."""
    log = pbs_reference / "multi-accounting_log_jobs-254-276.txt"
    with log.open() as lines:
        found = list(accounting.attempts(accounting.read_records(lines)))
    assert "_pbs_project_default" in log.read_text()
    assert found
    assert {attempt.account for attempt in found} == {None}
