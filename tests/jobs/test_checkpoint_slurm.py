"""Checkpoint/restart on the real Slurm: the time-limit requeue, and a node failing under a job.

A requeued job waits about two minutes on BeginTime; the tests release it after a few seconds
(slurm_queue.drive_to_the_end) so each takes two or three minutes.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from slurm_queue import completed_runs, drive_to_the_end, set_node

from hpcbridge import Cluster, JobSpec, JobState
from hpcbridge.cli.main import main
from hpcbridge.jobs.checkpoint import AttemptSummary, attempt_history, list_checkpoints, read_events

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(420)]

# Counts to LAST a step a second, saving its progress in ./state; the restart goes on from the
# checkpoint's copy, five steps a second so the second run ends before its own warning.
COUNT = (
    'i=0; echo "start"; '
    "while [ $i -lt $LAST ]; do i=$((i+1)); echo $i > state.new; mv -f state.new state; "
    'sleep 1; done; echo "finished at $i"'
)
RESTART = (
    'i=$(cat "$HPCBRIDGE_CHECKPOINT/state"); echo "resumed at $i"; '
    "while [ $i -lt $LAST ]; do i=$((i+1)); echo $i > state.new; mv -f state.new state; "
    'sleep 0.2; done; echo "finished at $i"'
)


def counter_job(workdir: Path, name: str, last: int, **checkpoint: Any) -> dict[str, Any]:
    return {
        "name": name,
        "workdir": str(workdir),
        "stdout": str(workdir / "out-%j.txt"),
        "command": COUNT,
        "env": {"LAST": str(last)},
        "checkpoint": {
            "command": 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"',
            "restart": RESTART,
            "directory": str(workdir / "ck"),
            **checkpoint,
        },
    }


def into_the_third_interval(workdir: Path) -> None:
    """Until two periodic checkpoints are committed, and 4 s more: mid-interval, so some work
    is lost when the run is cut off now, at most an interval's worth."""
    deadline = time.monotonic() + 120
    while len([e for e in read_events(workdir / "ck") if e.kind == "commit"]) < 2:
        assert time.monotonic() < deadline, "no periodic checkpoints"
        time.sleep(0.5)
    time.sleep(4)


def history(workdir: Path, job_id: str) -> list[AttemptSummary]:
    """sacct --duplicates of the job, joined with the wrapper's log."""
    return attempt_history(workdir / "ck", completed_runs(job_id))


def test_a_job_at_its_time_limit_is_requeued_and_finishes_from_its_checkpoint(
    slurm_cluster: Cluster, workdir: Path
) -> None:
    # The warning is asked 30 s before a 2-minute limit; Slurm may send it up to 60 s early
    # (sbatch(1), --signal), so it arrives 30-90 s into the run, before LAST.
    spec = counter_job(workdir, "ckpt-limit", 100, signal="USR1@30")
    spec["resources"] = {"walltime": "2"}
    job_id = slurm_cluster.submit(spec)
    assert drive_to_the_end(slurm_cluster, job_id), "the job was never requeued"

    output = (workdir / f"out-{job_id}.txt").read_text()
    lines = [line for line in output.splitlines() if not line.startswith(("hpcbridge", "slurm"))]
    assert lines[0] == "start"
    assert lines[-1] == "finished at 100"
    resumed = [int(line.split()[-1]) for line in lines if line.startswith("resumed at")]
    assert resumed
    assert 20 <= resumed[0] < 100
    assert lines.count("start") == 1
    assert "requeued job" in output
    limit_checkpoints = [c for c in list_checkpoints(workdir / "ck") if c.reason == "limit"]
    assert limit_checkpoints
    assert all(c.valid for c in limit_checkpoints)

    runs = history(workdir, job_id)
    assert len(runs) >= 2
    assert runs[0].state is JobState.REQUEUED
    assert runs[-1].state is JobState.COMPLETED
    assert runs[1].resumed_from is not None
    # The checkpoint is taken just before the requeue: next to nothing is lost.
    assert runs[0].lost_work_s is not None
    assert runs[0].lost_work_s <= 3
    print(f"time-limit requeue: {len(runs)} runs, recovery {runs[0].recovery_s} s")
    shown = CliRunner().invoke(
        main,
        ["checkpoint", "history", str(workdir / "ck"), "--job", job_id, "--site", "test-slurm"],
    )
    assert shown.exit_code == 0, shown.output
    assert "REQUEUED" in shown.output
    assert shown.output.rstrip().splitlines()[-1].split()[:2] == [str(len(runs)), "COMPLETED"]


@pytest.mark.disruptive
def test_a_job_on_a_failed_node_resumes_from_its_last_checkpoint(
    slurm_cluster: Cluster, workdir: Path
) -> None:
    interval = 10
    spec = counter_job(workdir, "ckpt-nodefail", 60, interval=f"0:{interval}")
    spec["resources"] = {"walltime": "10"}
    job_id = slurm_cluster.submit(spec)
    try:
        into_the_third_interval(workdir)
        failed_at = datetime.now(UTC)
        set_node("down", reason="hpcbridge-ckpt-test")
        deadline = time.monotonic() + 60
        while slurm_cluster.status(job_id)[job_id].state is not JobState.PENDING:
            assert time.monotonic() < deadline, "the job was not requeued by the node failure"
            time.sleep(0.5)
    finally:
        set_node("resume")
    drive_to_the_end(slurm_cluster, job_id)

    output = (workdir / f"out-{job_id}.txt").read_text()
    assert "resumed at" in output
    assert output.rstrip().endswith("finished at 60")
    runs = history(workdir, job_id)
    assert runs[0].state is JobState.NODE_FAIL
    assert runs[-1].state is JobState.COMPLETED
    assert runs[0].checkpoints >= 2
    assert runs[1].resumed_from is not None
    lost, recovery = runs[0].lost_work_s, runs[0].recovery_s
    assert lost is not None
    assert recovery is not None
    # Times are whole seconds on both sides (sacct's End, the log's commit), hence the +1.
    assert lost <= interval + 1
    assert runs[0].end is not None
    assert abs((runs[0].end - failed_at).total_seconds()) <= 5
    print(
        f"node failure: lost work {lost:.0f} s (interval {interval} s), recovery {recovery:.0f} s"
    )


def runs_of(job_id: str) -> list[str]:
    """The states of every run of a job so far (sacct --duplicates), oldest first."""
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sacct.stdout.split()


def wait_running(cluster: Cluster, *job_ids: str) -> None:
    deadline = time.monotonic() + 120
    while any(info.state is not JobState.RUNNING for info in cluster.status(job_ids).values()):
        assert time.monotonic() < deadline, f"jobs {job_ids} did not all start"
        time.sleep(0.5)


@pytest.mark.disruptive  # holds all 16 CPUs of the node for a minute or two
def test_a_preempted_job_resumes_from_its_checkpoint_and_a_protected_one_runs_on(
    slurm_cluster: Cluster, workdir: Path
) -> None:
    interval = 10
    # test-slurm.yaml: preemption {preemptible: [scavenger], protected: long}, and slurm-up.sh
    # lets QOS high preempt QOS scavenger (PreemptType=preempt/qos, PreemptMode=REQUEUE).
    scavenger = counter_job(workdir, "preempt-me", 60, interval=f"0:{interval}")
    scavenger.update(qos="scavenger", resources={"walltime": "10", "ntasks": 12})
    protected = {
        "name": "protect-me",
        "command": "sleep 600",
        "protect": True,
        "resources": {"walltime": "10", "ntasks": 4},
        "stdout": "/dev/null",
    }
    assert slurm_cluster.site.prepare(JobSpec.parse(protected)).qos == "long"
    victim = slurm_cluster.submit(scavenger)
    keeper = slurm_cluster.submit(protected)
    try:
        wait_running(slurm_cluster, victim, keeper)
        into_the_third_interval(workdir)
        preempted_at = datetime.now(UTC)
        # 8 CPUs: only preempting the scavenger job frees them (the protected one holds 4).
        urgent = slurm_cluster.submit(
            {
                "name": "urgent",
                "command": "sleep 5",
                "qos": "high",
                "stdout": "/dev/null",
                "resources": {"walltime": "5", "ntasks": 8},
            }
        )
        assert slurm_cluster.wait(urgent, timeout=120)[urgent].state is JobState.COMPLETED
        drive_to_the_end(slurm_cluster, victim)
        assert runs_of(keeper) == ["RUNNING"]  # one run, never preempted, still going
    finally:
        slurm_cluster.cancel(keeper)

    output = (workdir / f"out-{victim}.txt").read_text()
    assert "resumed at" in output
    assert output.rstrip().endswith("finished at 60")
    runs = history(workdir, victim)  # the ledger's Slurm source, joined with the wrapper's log
    assert [run.state for run in runs] == [JobState.PREEMPTED, JobState.COMPLETED]
    assert runs[0].checkpoints >= 2
    assert runs[1].resumed_from is not None
    lost = runs[0].lost_work_s
    assert lost is not None
    assert lost <= interval + 1  # whole seconds on both sides
    assert runs[0].end is not None
    assert abs((runs[0].end - preempted_at).total_seconds()) <= 30
    print(
        f"preemption: lost work {lost:.0f} s (interval {interval} s), recovery "
        f"{runs[0].recovery_s:.0f} s"
    )
