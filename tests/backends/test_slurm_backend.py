"""Slurm-specific behaviour, on the real test cluster."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from slurm_queue import jobs_named

from hpcbridge import (
    Cluster,
    CommandResult,
    JobNotFound,
    JobState,
    LocalTransport,
    PermissionDenied,
    RecordingTransport,
    SiteConfig,
    SubmitError,
)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


def spec(name: str, workdir: Path, command: str = "true", **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "command": command,
        "workdir": str(workdir),
        "stdout": f"{name}-%j.out",
        **fields,
    }


def test_lost_sbatch_answer_does_not_duplicate_the_job(workdir: Path) -> None:
    """sbatch creates the job but its answer is lost: the retry finds it by its token."""
    lost = {"done": False}

    def lose_first_answer(argv: list[str], result: CommandResult) -> CommandResult:
        if argv[0] == "sbatch" and not lost["done"]:
            lost["done"] = True
            return CommandResult(
                result.argv, 1, "", "sbatch: error: Socket timed out on send/recv operation"
            )
        return result

    transport = RecordingTransport(LocalTransport(), lose_first_answer)
    name = f"lost-answer-{time.time_ns()}"
    with Cluster(SiteConfig.load("test-slurm"), transport=transport) as cluster:
        cluster.backend.commands.backoff = 0.01  # type: ignore[attr-defined]
        job_id = cluster.submit(spec(name, workdir))
    assert transport.count("sbatch") == 1
    assert jobs_named(name) == [job_id]


def test_unavailable_controller_is_retried_once_it_answers(workdir: Path) -> None:
    """The controller refuses twice (no job created), then accepts: exactly one job."""
    refusals = {"left": 2}

    class RefuseTwice(LocalTransport):
        def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
            if argv[0] == "sbatch" and refusals["left"]:
                refusals["left"] -= 1
                refusal = "sbatch: error: Unable to contact slurm controller (connect failure)"
                return CommandResult(tuple(argv), 1, "", refusal)
            return super().run(argv, **kwargs)

    transport = RecordingTransport(RefuseTwice())
    name = f"flaky-{time.time_ns()}"
    with Cluster(SiteConfig.load("test-slurm"), transport=transport) as cluster:
        cluster.backend.commands.backoff = 0.01  # type: ignore[attr-defined]
        job_id = cluster.submit(spec(name, workdir))
    assert transport.count("sbatch") == 3
    assert jobs_named(name) == [job_id]


def test_status_of_many_jobs_is_one_squeue_call(workdir: Path) -> None:
    transport = RecordingTransport(LocalTransport())
    with Cluster(SiteConfig.load("test-slurm"), transport=transport) as cluster:
        ids = [cluster.submit(spec(f"many-{n}", workdir, "sleep 20")) for n in range(25)]
        transport.commands.clear()
        infos = cluster.status(ids)
        assert set(infos) == set(ids)
        assert transport.commands
        assert all(argv[0] == "squeue" for argv in transport.commands)
        assert len(transport.commands) == 1
        cluster.cancel(ids)


def test_job_that_left_squeue_is_found_in_sacct(slurm_cluster: Cluster, workdir: Path) -> None:
    job_id = slurm_cluster.submit(spec("leaves", workdir, "exit 4"))
    slurm_cluster.wait(job_id, timeout=60)
    deadline = time.monotonic() + 90
    while subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip():
        assert time.monotonic() < deadline, "job never left squeue (MinJobAge)"
        time.sleep(1)
    info = slurm_cluster.status(job_id)[job_id]
    assert info.state is JobState.FAILED
    assert info.exit_code == 4


def test_refused_submission_names_the_field() -> None:
    bare = SiteConfig(name="bare", scheduler="slurm")  # no partition list: Slurm itself refuses
    with Cluster(bare) as cluster, pytest.raises(SubmitError, match="partition") as caught:
        cluster.submit({"name": "nowhere", "command": "true", "partition": "nosuchpartition"})
    assert "Invalid partition name" in str(caught.value)


def test_gpu_request_reaches_the_job(slurm_cluster: Cluster, workdir: Path) -> None:
    job_id = slurm_cluster.submit(
        spec(
            "gpu",
            workdir,
            'echo "gpus=$CUDA_VISIBLE_DEVICES"',
            resources={"gpus": 1, "gpu_type": "a100"},
        )
    )
    assert slurm_cluster.wait(job_id, timeout=60)[job_id].state is JobState.COMPLETED
    assert (workdir / f"gpu-{job_id}.out").read_text().startswith("gpus=")
    assert (workdir / f"gpu-{job_id}.out").read_text().strip() != "gpus="


def test_account_and_qos_are_charged(slurm_cluster: Cluster, workdir: Path) -> None:
    job_id = slurm_cluster.submit(
        spec("charged", workdir, account="chemistry", qos="long", partition="long")
    )
    info = slurm_cluster.wait(job_id, timeout=60)[job_id]
    assert info.account == "chemistry"
    assert info.partition == "long"


def test_site_check_reaches_the_controller(slurm_cluster: Cluster) -> None:
    assert "UP" in slurm_cluster.check()


def test_cancel_of_unknown_job_is_named(slurm_cluster: Cluster) -> None:
    with pytest.raises(JobNotFound, match="987654"):
        slurm_cluster.cancel("987654")


class AsOtherUser(LocalTransport):
    """Runs every command as the unprivileged user of tests/cluster/sshd-up.sh (root only)."""

    def run(self, argv: Sequence[str], **options: Any) -> CommandResult:
        return super().run(["runuser", "-u", "hpcbridge-user", "--", *argv], **options)


def test_another_users_job_is_permission_denied(slurm_cluster: Cluster, workdir: Path) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but not root: acting as another user (runuser) takes root")
        pytest.skip("acting as another user takes root (CI runs as root)")
    job_id = slurm_cluster.submit(spec("not-yours", workdir, "sleep 120"))
    try:
        with Cluster(slurm_cluster.site, transport=AsOtherUser()) as other_user:
            for operation in (other_user.cancel, other_user.hold, other_user.requeue):
                with pytest.raises(PermissionDenied, match="not permitted for this user"):
                    operation(job_id)
        assert slurm_cluster.status(job_id)[job_id].state in (JobState.PENDING, JobState.RUNNING)
    finally:
        slurm_cluster.cancel(job_id)


def squeue_priority(job_ids: Sequence[str]) -> dict[str, tuple[int, str, int]]:
    """Slurm's own view: priority, QOS and nice of each job (squeue -o %Q %q %y)."""
    listed = subprocess.run(
        ["squeue", "--noheader", f"--jobs={','.join(job_ids)}", "--format=%i %Q %q %y"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = (line.split() for line in listed if line.strip())
    return {job: (int(priority), qos, int(nice)) for job, priority, qos, nice in rows}


@pytest.mark.disruptive  # the whole node: beside other tests it would starve them, and they it
def test_priority_levels_move_queued_jobs_ahead(slurm_cluster: Cluster, workdir: Path) -> None:
    # The node's 16 CPUs are taken; two jobs wait, the later one is moved up and runs first.
    blocker = slurm_cluster.submit(
        spec("blocker", workdir, "sleep 5", resources={"cpus_per_task": 16})
    )
    first = slurm_cluster.submit(spec("first", workdir, "date +%s.%N > first", priority="low"))
    second = slurm_cluster.submit(spec("second", workdir, "date +%s.%N > second"))
    try:
        before = squeue_priority([first, second])
        assert before[first][1:] == ("normal", 1000)  # low: nice 1000
        slurm_cluster.set_priority([second], "high")
        after = squeue_priority([first, second])
        assert after[second][1:] == ("high", 0)
        assert after[second][0] > before[second][0] > after[first][0]
        infos = slurm_cluster.wait([blocker, first, second], timeout=120)
        assert infos[second].start_time <= infos[first].start_time  # type: ignore[operator]
        assert float((workdir / "second").read_text()) < float((workdir / "first").read_text())
    except BaseException:
        slurm_cluster.cancel([blocker, first, second])
        raise
