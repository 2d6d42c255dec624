"""The backend contract: every backend must pass the same suite through the Cluster facade."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcbridge import Cluster, JobInfo, JobState, SiteConfig


@dataclass
class Harness:
    """A cluster plus the few things a test must do differently per scheduler."""

    cluster: Cluster
    kind: str
    expedite_requeue: Callable[[str], None]

    def wait_for(
        self, job_id: str, predicate: Callable[[JobInfo], bool], timeout: float = 60
    ) -> JobInfo:
        """Poll one job until ``predicate`` holds (e.g. it is RUNNING)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.cluster.backend.status([job_id]).get(job_id)
            if info is not None and predicate(info):
                return info
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} never reached the expected state; last: {info}")
            time.sleep(0.2)


def _squeue_state_and_reason(job_id: str) -> list[str]:
    return subprocess.run(
        ["squeue", "--noheader", f"--jobs={job_id}", "--format=%T %r"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()


def _slurm_release_requeued(job_id: str) -> None:
    # Slurm holds a requeued job back by ~2 minutes (BeginTime); start it now instead. Doing
    # so while the old run is still being cleaned up makes the new launch fail, so wait
    # until the job has sat PENDING on BeginTime for a moment first.
    deadline = time.monotonic() + 30
    while _squeue_state_and_reason(job_id) != ["PENDING", "BeginTime"]:
        if time.monotonic() > deadline:
            pytest.fail(f"requeued job {job_id} never waited on BeginTime")
        time.sleep(0.3)
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"], check=True)


def _pbs_site(json_output: bool) -> SiteConfig:
    site = SiteConfig.load("test-pbs")
    options = site.pbs.model_copy(update={"json_output": json_output})
    return site.model_copy(update={"pbs": options})


@pytest.fixture(
    params=[
        "local",
        pytest.param("slurm", marks=pytest.mark.slurm),
        pytest.param("slurm-ssh", marks=[pytest.mark.slurm, pytest.mark.ssh]),
        pytest.param("pbs-json", marks=pytest.mark.pbs),
        pytest.param("pbs-text", marks=pytest.mark.pbs),
    ]
)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        with Cluster.local(state_dir=tmp_path / "state") as cluster:
            yield Harness(cluster, "local", lambda job_id: None)
    elif request.param.startswith("slurm"):
        # slurm-ssh: the same Slurm, every command through the loopback sshd (test-slurm-ssh).
        site = "test-slurm" if request.param == "slurm" else "test-slurm-ssh"
        with Cluster.from_site(site) as cluster:
            yield Harness(cluster, request.param, _slurm_release_requeued)
    else:
        json_output = request.param == "pbs-json"
        emulator = request.getfixturevalue("pbs_emulator")
        # PBS writes its own .o files to the submission folder: keep them out of the repo.
        request.getfixturevalue("monkeypatch").chdir(tmp_path)
        emulator.configure(json_output=json_output)
        with Cluster(_pbs_site(json_output)) as cluster:
            yield Harness(cluster, request.param, lambda job_id: None)


def running(info: JobInfo) -> bool:
    return info.state is JobState.RUNNING
