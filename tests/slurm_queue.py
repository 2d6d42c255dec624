"""What the real test Slurm holds, asked directly with squeue and sinfo (the tests' independent
witness), and the one node failed and brought back on purpose."""

from __future__ import annotations

import subprocess
import time

from hpcbridge import Cluster, JobState

NODE = "vm"


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
