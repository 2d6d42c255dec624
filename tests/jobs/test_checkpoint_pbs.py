"""Checkpoint/restart on the PBS emulator: the wrapper's own timer, qrerun (for an operator, and
its refusal for a plain user), and a node failure.

Jobs are submitted as ``hpcuser``, never as root: PBS treats root as a manager, who may do what
a user's job may not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobState, SiteConfig
from hpcbridge.jobs.checkpoint import CONTINUED_STATUS, list_checkpoints, read_events

pytestmark = pytest.mark.timeout(120)

# Counts to LAST, a step each 0.2 s, logging to ./log (PBS delivers stdout only at the end).
COUNT = (
    "i=${FROM:-0}; while [ $i -lt $LAST ]; do i=$((i+1)); "
    "echo $i > state.new; mv -f state.new state; sleep 0.2; done; "
    'echo "finished at $i" >> log'
)
RESTART = 'FROM=$(cat "$HPCBRIDGE_CHECKPOINT/state"); echo "resumed at $FROM" >> log; ' + COUNT


@pytest.fixture
def cluster(pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.chdir(tmp_path)
    site = SiteConfig.load("test-pbs")
    return Cluster(site.model_copy(update={"partitions": {}}))


def counter_job(folder: Path, last: int, **checkpoint: Any) -> dict[str, Any]:
    return {
        "name": "ckpt",
        "workdir": str(folder),
        "command": "echo start >> log; " + COUNT,
        "env": {"LAST": str(last)},
        "checkpoint": {
            "command": 'cp state "$HPCBRIDGE_CHECKPOINT_TMP/"',
            "restart": RESTART,
            "directory": "ck",
            **checkpoint,
        },
    }


@pytest.fixture
def plain_user(pbs_emulator: PbsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Submit as an ordinary user (the job's own PBS commands then act as that user too)."""
    monkeypatch.setenv("PBS_EMULATOR_USER", "hpcuser")
    return "hpcuser"


def limited_counter(folder: Path, **checkpoint: Any) -> dict[str, Any]:
    """20 s of walltime, the warning 12 s before it (8 s in): 40 steps done, 60 more to go."""
    spec = counter_job(folder, 100, signal="USR1@12", **checkpoint)
    spec["resources"] = {"walltime": "0:20"}
    return spec


def test_the_wrapper_reruns_the_job_with_qrerun_and_it_resumes(
    cluster: Cluster, pbs_emulator: PbsEmulator, plain_user: str, tmp_path: Path
) -> None:
    pbs_emulator.configure(operators=[plain_user])  # qrerun takes operator or manager rights
    spec = limited_counter(tmp_path)
    job_id = cluster.submit(spec)
    info = cluster.wait(job_id, timeout=90)[job_id]
    assert info.state is JobState.COMPLETED
    assert info.restarts >= 1
    log = (tmp_path / "log").read_text().splitlines()
    assert log[0] == "start"
    assert log[-1] == "finished at 100"
    assert log.count("start") == 1
    resumed = int(log[1].split()[-1])
    assert 20 <= resumed < 100
    assert [c.reason for c in list_checkpoints(tmp_path / "ck")][-1] == "limit"


def test_a_node_failure_resumes_from_the_last_periodic_checkpoint(
    cluster: Cluster, pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    spec = counter_job(tmp_path, 60, interval="0:02")
    job_id = cluster.submit(spec)
    deadline = time.monotonic() + 30
    while len([e for e in read_events(tmp_path / "ck") if e.kind == "commit"]) < 2:
        assert time.monotonic() < deadline, "no periodic checkpoints"
        time.sleep(0.1)
    pbs_emulator.fault("node_down")
    time.sleep(1.5)
    pbs_emulator.fault("node_up")
    info = cluster.wait(job_id, timeout=60)[job_id]
    assert info.state is JobState.COMPLETED
    assert info.restarts == 1
    log = (tmp_path / "log").read_text().splitlines()
    assert log[0] == "start"
    assert log[1].startswith("resumed at ")
    assert log[-1] == "finished at 60"
    starts = [e for e in read_events(tmp_path / "ck") if e.kind == "start"]
    assert [e.attempt for e in starts] == [1, 2]
    assert starts[1].fields[0].startswith("ckpt-")


def test_a_plain_users_refused_qrerun_continues_the_work_in_a_job_it_submits(
    cluster: Cluster, plain_user: str, tmp_path: Path
) -> None:
    # Each run does 40 of the 100 steps: three jobs, each submitted by the one before.
    jobs = [cluster.submit(limited_counter(tmp_path))]
    while True:
        info = cluster.wait(jobs[-1], timeout=90)[jobs[-1]]
        if info.state is JobState.COMPLETED:
            break
        assert (info.state, info.exit_code) == (JobState.FAILED, CONTINUED_STATUS)
        handed_over = [e for e in read_events(tmp_path / "ck") if e.kind == "continued"]
        assert [e.job_id for e in handed_over] == jobs
        jobs.append(handed_over[-1].fields[0])
    assert len(set(jobs)) == len(jobs) == 3
    log = (tmp_path / "log").read_text().splitlines()
    assert log.count("start") == 1
    assert [line.split()[0] for line in log[1:]] == ["resumed", "resumed", "finished"]
    assert log[-1] == "finished at 100"
    starts = [e for e in read_events(tmp_path / "ck") if e.kind == "start"]
    assert [(e.job_id, e.attempt) for e in starts] == [(job, n) for n, job in enumerate(jobs, 1)]
    assert all(e.fields[0].startswith("ckpt-") for e in starts[1:])
    # The job's log says why and where the work went (PBS's output file, stdout and stderr).
    output = (tmp_path / f"ckpt.o{jobs[0].split('.')[0]}").read_text()
    assert "qrerun: Unauthorized Request" in output
    assert (
        "refused (it takes operator rights); the work continues from the checkpoint in job "
        f"{jobs[1]}, which starts when this one ends"
    ) in output


def test_max_restarts_bounds_the_jobs_that_continue_one_another(
    cluster: Cluster, plain_user: str, tmp_path: Path
) -> None:
    job_id = cluster.submit(limited_counter(tmp_path, max_restarts=0))
    cluster.wait(job_id, timeout=90)
    continued = [e for e in read_events(tmp_path / "ck") if e.kind == "continued"]
    next_id = continued[0].fields[0]
    info = cluster.wait(next_id, timeout=60)[next_id]
    assert (info.state, info.exit_code) == (JobState.FAILED, 3)
    refused = [e for e in read_events(tmp_path / "ck") if e.kind == "refused"]
    assert [(e.job_id, e.attempt) for e in refused] == [(next_id, 2)]
