"""Retries with backoff: the rule (which endings, how long after, how much more memory), and
Cluster.wait(retry=True) on the local backend and the real test Slurm, where a job that fails
once is submitted again and completes, one that fails without a retry policy is not, and a
job whose node fails (a real NODE_FAIL on the test node) completes on its second attempt."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from slurm_queue import fail_node_under

from hpcbridge import Cluster, JobSpec, JobState
from hpcbridge.errors import SpecError
from hpcbridge.jobs.retry import retry_after

ONCE = "if [ -f ran ]; then exit 0; fi; touch ran; exit 3"


def job(**retry: object) -> JobSpec:
    data = {"name": "sim", "command": "true", "resources": {"memory": "1000M"}}
    return JobSpec.parse({**data, "retry": retry})


def test_the_default_endings_are_retried_with_a_growing_backoff() -> None:
    spec = job(attempts=2, backoff="90s", factor=2)
    first = retry_after(spec, JobState.NODE_FAIL, runs=1)
    second = retry_after(spec, JobState.BOOT_FAIL, runs=2)
    assert first is not None
    assert second is not None
    assert (first.delay_s, second.delay_s) == (90, 180)
    assert first.reason == "NODE_FAIL: attempt 2 of 3 after 90 s"
    assert retry_after(spec, JobState.NODE_FAIL, runs=3) is None  # attempts used up
    assert retry_after(spec, JobState.FAILED, runs=1) is None  # the job's own fault
    assert (
        retry_after(JobSpec.parse({"name": "x", "command": "true"}), JobState.NODE_FAIL, 1) is None
    )


def test_out_of_memory_raises_the_memory_by_the_factor() -> None:
    plan = retry_after(job(memory_factor=1.5, backoff=0), JobState.OUT_OF_MEMORY, runs=1)
    assert plan is not None
    assert plan.spec.resources.memory == 1500
    assert plan.reason.endswith("memory 1000M -> 1500M")
    bare = JobSpec.parse({"name": "x", "command": "true", "retry": {"backoff": "1m"}})
    unraised = retry_after(bare, JobState.OUT_OF_MEMORY, runs=1)
    assert unraised is not None
    assert unraised.delay_s == 60
    assert unraised.reason.endswith("(no memory request to raise)")


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"on": ["COMPLETED"]}, "retry.on.0"),
        ({"attempts": 0}, "retry.attempts"),
        ({"backoff": "soon"}, "retry.backoff"),
        ({"factor": 0.5}, "retry.factor"),
    ],
)
def test_a_retry_policy_names_what_is_wrong(retry: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        JobSpec.parse({"name": "x", "command": "true", "retry": retry})


def wait_with_retry(cluster: Cluster, workdir: Path) -> None:
    spec = {"command": ONCE, "workdir": str(workdir), "stdout": "/dev/null"}
    again = cluster.submit({**spec, "name": "again", "retry": {"on": ["FAILED"], "backoff": 1}})
    plain = cluster.submit({**spec, "name": "plain", "workdir": str(workdir / "plain")})
    infos = cluster.wait([again, plain], timeout=180, retry=True)
    assert infos[again].state is JobState.COMPLETED
    assert len(cluster.attempts[again]) == 2
    assert cluster.attempts[again][0] == again
    first = cluster.status(cluster.attempts[again][0])[again]
    assert (first.state, first.exit_code) == (JobState.FAILED, 3)
    assert (infos[plain].state, infos[plain].exit_code) == (JobState.FAILED, 3)
    assert cluster.attempts[plain] == [plain]


def test_wait_submits_a_failed_job_again_on_the_local_backend(
    local_cluster: Cluster, workdir: Path
) -> None:
    (workdir / "plain").mkdir()
    wait_with_retry(local_cluster, workdir)


@pytest.mark.slurm
def test_wait_submits_a_failed_job_again_on_slurm(slurm_cluster: Cluster, workdir: Path) -> None:
    (workdir / "plain").mkdir(mode=0o777)
    wait_with_retry(slurm_cluster, workdir)


@pytest.mark.slurm
@pytest.mark.disruptive
@pytest.mark.timeout(300)
def test_a_job_whose_node_fails_completes_on_its_second_attempt(
    slurm_cluster: Cluster, workdir: Path
) -> None:
    # Not requeueable, so the node failure ends the run; the retry finds the first run's mark
    # and ends at once. The default retry endings include NODE_FAIL.
    command = "if [ -f ran ]; then exit 0; fi; touch ran; sleep 120"
    spec = {"name": "nodefail", "command": command, "workdir": str(workdir), "requeue": False}
    job_id = slurm_cluster.submit({**spec, "retry": {"attempts": 1, "backoff": "2s"}})
    answer: dict[str, JobState] = {}

    def wait() -> None:
        answer["state"] = slurm_cluster.wait(job_id, timeout=240, retry=True)[job_id].state

    waiter = threading.Thread(target=wait)
    waiter.start()
    fail_node_under(slurm_cluster, job_id, reason="hpcbridge-retry-test")
    waiter.join(timeout=240)
    assert answer == {"state": JobState.COMPLETED}
    first, second = slurm_cluster.attempts[job_id]
    assert first == job_id != second
    assert slurm_cluster.status(first)[first].state is JobState.NODE_FAIL
