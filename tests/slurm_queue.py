"""What the real test Slurm holds, asked directly with squeue, sinfo and sacct (the tests'
independent witness), the one node failed and brought back on purpose, and requeued jobs
released without Slurm's two-minute wait."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime

from hpcbridge import Cluster, JobState
from hpcbridge.backends.slurm import cli
from hpcbridge.backends.slurm.accounting import runs_from_sacct
from hpcbridge.jobs.records import AttemptRecord

NODE = "vm"
RELEASE_AFTER_S = 3


def jobs_named(name: str) -> list[str]:
    """Ids of every job with this name that slurmctld still knows, finished ones included."""
    listed = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def node_state() -> str:
    """The test node's state as sinfo prints it: idle, mixed, allocated, down, ..."""
    sinfo = ["sinfo", "--noheader", f"--nodes={NODE}", "--format=%T"]
    return subprocess.run(sinfo, capture_output=True, text=True, check=True).stdout.strip()


def set_node(state: str, *, reason: str = "hpcbridge-test", timeout: float = 30) -> None:
    """``scontrol update nodename=vm state=down|resume``.

    The test cluster has ReturnToService=2, so a node set down comes back by itself once its
    failed job is gone, and slurmctld then refuses "resume" (the node is not down): that
    counts as done. Until the failed job is gone "resume" is refused too, so it is retried.
    """
    argv = ["scontrol", "update", f"nodename={NODE}", f"state={state}"]
    if state == "down":
        argv.append(f"reason={reason}")
    deadline = time.monotonic() + timeout
    while subprocess.run(argv, capture_output=True, check=False).returncode != 0:
        if state == "resume" and node_state().rstrip("*") in ("idle", "mixed", "allocated"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{' '.join(argv)} kept failing (node {node_state()})")
        time.sleep(0.5)


def fail_node_under(cluster: Cluster, job_id: str, *, reason: str) -> None:
    """Set the node down once ``job_id`` runs, wait until the job has ended NODE_FAIL, and
    bring the node back whatever happens."""
    try:
        deadline = time.monotonic() + 60
        while cluster.status(job_id)[job_id].state is not JobState.RUNNING:
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.5)
        set_node("down", reason=reason)
        deadline = time.monotonic() + 60
        while cluster.status(job_id)[job_id].state is not JobState.NODE_FAIL:
            assert time.monotonic() < deadline, "the node failure did not end the job"
            time.sleep(0.5)
    finally:
        set_node("resume")


def drive_to_the_end(cluster: Cluster, job_id: str, *, timeout: float = 360) -> list[datetime]:
    """Release each requeued run soon; the times the job was seen requeued.

    Not at once: a run started while the previous one is still being cleaned up on the node
    fails to launch (seen in CI: FAILED 1:0 within the second), so the job is left on
    BeginTime for RELEASE_AFTER_S first; Slurm itself would leave it about two minutes.
    """
    requeued: list[datetime] = []
    waiting_since: float | None = None  # this run's first sight of it held on BeginTime
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = cluster.status(job_id)[job_id]
        if info.state is JobState.COMPLETED:
            return requeued
        assert not info.state.is_terminal, f"job {job_id} ended {info.state}"
        if info.state is not JobState.PENDING or info.reason != "BeginTime":
            waiting_since = None
        elif waiting_since is None:
            waiting_since = time.monotonic()
            requeued.append(datetime.now(UTC))
        elif time.monotonic() - waiting_since >= RELEASE_AFTER_S:
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"], check=True)
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def completed_runs(job_id: str) -> list[AttemptRecord]:
    """Every run of the job, from sacct --duplicates, once slurmdbd has its last one ended
    COMPLETED (it lags slurmctld by a moment)."""
    for _ in range(30):
        sacct = subprocess.run(
            cli.sacct_history([job_id], datetime.now(UTC)),
            env={**cli.UTC_ENV, "PATH": "/usr/bin:/usr/local/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        runs = runs_from_sacct(sacct.stdout)
        if runs and runs[-1].state is JobState.COMPLETED:
            return runs
        time.sleep(1)
    raise AssertionError(f"sacct never showed job {job_id} completed")
