"""Submit, arrays, every dependency kind, hold/release, cancel, requeue, timeout, signals.

Each test runs unchanged on the local backend, the real Slurm test cluster (directly and over
SSH) and the PBS emulator (as a plain user and as an operator), or on the one site named by
HPCBRIDGE_TEST_SITE (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcbridge import JobNotFound, JobState, PermissionDenied, SpecError

from .conftest import Harness, running

pytestmark = pytest.mark.timeout(240)


def job(name: str, command: str, workdir: Path, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "command": command,
        "workdir": str(workdir),
        "stdout": f"{name}-%j.out",
        "resources": {"walltime": "5:00"},
        **fields,
    }


def test_submit_runs_the_command_and_reports_completion(harness: Harness, workdir: Path) -> None:
    job_id = harness.cluster.submit(job("hello", 'echo "hello from $HPCBRIDGE_JOB_ID"', workdir))
    info = harness.cluster.wait(job_id, timeout=60)[job_id]
    assert info.state is JobState.COMPLETED
    assert info.exit_code == 0
    assert info.start_time is not None
    assert info.end_time is not None
    assert (workdir / f"hello-{job_id}.out").read_text() == f"hello from {job_id}\n"


def test_non_zero_exit_is_failed_with_its_code(harness: Harness, workdir: Path) -> None:
    job_id = harness.cluster.submit(job("fails", "exit 3", workdir))
    info = harness.cluster.wait(job_id, timeout=60)[job_id]
    assert info.state is JobState.FAILED
    assert info.exit_code == 3


def test_array_runs_every_index_within_its_limit(harness: Harness, workdir: Path) -> None:
    command = 'echo "$HPCBRIDGE_ARRAY_INDEX" > "index-$HPCBRIDGE_ARRAY_INDEX.txt"; sleep 1'
    array_id = harness.cluster.submit(job("arr", command, workdir, array="1-4%2"))
    result = harness.cluster.wait(array_id, timeout=90)
    assert result[array_id].state is JobState.COMPLETED
    tasks = harness.cluster.status(array_id)
    task_ids = sorted(info.array_task_id for info in tasks.values() if info.array_task_id)
    assert task_ids == [1, 2, 3, 4]
    assert all(info.state is JobState.COMPLETED for info in tasks.values())
    for index in range(1, 5):
        assert (workdir / f"index-{index}.txt").read_text() == f"{index}\n"


def test_afterok_waits_for_a_successful_parent(harness: Harness, workdir: Path) -> None:
    parent = harness.cluster.submit(job("parent", "sleep 2; touch parent-done", workdir))
    child = harness.cluster.submit(
        job("child", "test -e parent-done", workdir, depends_on=[f"afterok:{parent}"])
    )
    infos = harness.cluster.wait([parent, child], timeout=90)
    assert infos[child].state is JobState.COMPLETED
    assert infos[child].start_time >= infos[parent].end_time  # type: ignore[operator]


def test_failed_parent_cancels_afterok_and_runs_the_others(harness: Harness, workdir: Path) -> None:
    parent = harness.cluster.submit(job("bad-parent", "sleep 1; exit 1", workdir))
    never = harness.cluster.submit(job("never", "touch ran", workdir, depends_on=[parent]))
    rescue = harness.cluster.submit(
        job("rescue", "true", workdir, depends_on=[f"afternotok:{parent}"])
    )
    always = harness.cluster.submit(
        job("always", "true", workdir, depends_on=[f"afterany:{parent}"])
    )
    infos = harness.cluster.wait([parent, never, rescue, always], timeout=90)
    assert infos[parent].state is JobState.FAILED
    assert infos[never].state is JobState.CANCELLED
    assert not (workdir / "ran").exists()
    assert infos[rescue].state is JobState.COMPLETED
    assert infos[always].state is JobState.COMPLETED


def test_singleton_runs_same_named_jobs_one_at_a_time(harness: Harness, workdir: Path) -> None:
    if harness.kind.startswith("pbs"):  # PBS has no such dependency: refused, not faked
        with pytest.raises(SpecError, match="depends_on: PBS has no singleton"):
            harness.cluster.submit(job("single", "true", workdir, depends_on=["singleton"]))
        return
    first = harness.cluster.submit(job("single", "sleep 2", workdir, depends_on=["singleton"]))
    second = harness.cluster.submit(job("single", "sleep 1", workdir, depends_on=["singleton"]))
    infos = harness.cluster.wait([first, second], timeout=90)
    assert infos[second].start_time >= infos[first].end_time  # type: ignore[operator]


def test_hold_and_release(harness: Harness, workdir: Path) -> None:
    blocker = harness.cluster.submit(job("blocker", "sleep 3", workdir))
    held = harness.cluster.submit(job("held", "true", workdir, depends_on=[blocker]))
    harness.cluster.hold(held)
    assert harness.cluster.status(held)[held].held
    harness.cluster.wait(blocker, timeout=60)
    assert harness.cluster.status(held)[held].state is JobState.PENDING
    harness.cluster.release(held)
    assert harness.cluster.wait(held, timeout=60)[held].state is JobState.COMPLETED


def test_cancel_a_running_job(harness: Harness, workdir: Path) -> None:
    job_id = harness.cluster.submit(job("long", "sleep 300", workdir))
    harness.wait_for(job_id, running)
    harness.cluster.cancel(job_id)
    assert harness.cluster.wait(job_id, timeout=60)[job_id].state is JobState.CANCELLED


def test_requeue_runs_the_job_again_or_says_which_right_it_takes(
    harness: Harness, workdir: Path
) -> None:
    command = "echo run >> runs.txt; test $(wc -l < runs.txt) -ge 2 || sleep 300"
    job_id = harness.cluster.submit(job("again", command, workdir, requeue=True))
    harness.wait_for(job_id, running)
    refused: PermissionDenied | None = None
    try:
        harness.cluster.requeue(job_id)
    except PermissionDenied as error:
        refused = error
    if harness.kind != "pbs-site":  # on a real PBS, it depends on this user's rights
        assert (refused is not None) == (harness.kind == "pbs-json")  # the plain PBS user
    if refused is not None:
        # PBS keeps qrerun for operators and managers; a plain user's job runs on untouched.
        assert "qrerun takes operator or manager rights" in str(refused)
        assert harness.cluster.status(job_id)[job_id].state is JobState.RUNNING
        harness.cluster.cancel(job_id)
        return
    harness.wait_for(job_id, lambda info: info.state is not JobState.RUNNING)
    harness.expedite_requeue(job_id)
    info = harness.cluster.wait(job_id, timeout=120)[job_id]
    assert info.state is JobState.COMPLETED
    assert (workdir / "runs.txt").read_text() == "run\nrun\n"


def test_walltime_ends_in_timeout(harness: Harness, workdir: Path) -> None:
    job_id = harness.cluster.submit(
        job("slow", "sleep 600", workdir, resources={"walltime": "0:05"})
    )
    info = harness.cluster.wait(job_id, timeout=200)[job_id]
    assert info.state is JobState.TIMEOUT


def test_signal_before_the_limit_reaches_the_batch_shell(harness: Harness, workdir: Path) -> None:
    command = "trap 'echo caught > signal.txt; exit 0' USR1; sleep 600 & wait"
    job_id = harness.cluster.submit(
        job("sig", command, workdir, resources={"walltime": "1:00"}, signal="B:USR1@50")
    )
    info = harness.cluster.wait(job_id, timeout=150)[job_id]
    assert (workdir / "signal.txt").read_text() == "caught\n"
    assert info.state is JobState.COMPLETED


def test_unknown_job_ids_are_named(harness: Harness) -> None:
    with pytest.raises(JobNotFound, match="987654"):
        harness.cluster.status(["987654"])
