"""Checkpoint/restart on the PBS emulator: the wrapper's own timer, qrerun, and a node failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobState, SiteConfig
from hpcbridge.jobs.checkpoint import list_checkpoints, read_events

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


def test_the_wrapper_reruns_the_job_with_qrerun_and_it_resumes(
    cluster: Cluster, tmp_path: Path
) -> None:
    # 20 s of walltime, the warning 12 s before it (8 s in): 40 steps done, 60 more to go.
    spec = counter_job(tmp_path, 100, signal="USR1@12")
    spec["resources"] = {"walltime": "0:20"}
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
