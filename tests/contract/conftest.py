"""The backend contract: every backend must pass the same suite through the Cluster facade.

``HPCBRIDGE_TEST_SITE=path.yaml`` (or a site name) runs the same tests against that site
instead, as the user running pytest: an administrator's check of a real Slurm or PBS. Jobs
write under ``HPCBRIDGE_TEST_WORKDIR`` (default: a folder in the current directory, as /tmp
is rarely shared with compute nodes), which the tests read back, so run them on a login node.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcbridge import Cluster, JobInfo, JobState, SiteConfig
from hpcbridge.transports.base import Transport


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


TEST_SITE = os.environ.get("HPCBRIDGE_TEST_SITE")


def _slurm_release_requeued(transport: Transport) -> Callable[[str], None]:
    """Slurm holds a requeued job back by ~2 minutes (BeginTime); start it now instead (its
    owner may). Doing so while the old run is still being cleaned up makes the new launch
    fail, so wait until the job has sat PENDING on BeginTime for a moment first."""

    def release(job_id: str) -> None:
        squeue = ["squeue", "--noheader", f"--jobs={job_id}", "--format=%T %r"]
        deadline = time.monotonic() + 30
        while transport.run(squeue).stdout.split() != ["PENDING", "BeginTime"]:
            if time.monotonic() > deadline:
                pytest.fail(f"requeued job {job_id} never waited on BeginTime")
            time.sleep(0.3)
        time.sleep(2)
        update = transport.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"])
        assert update.ok, update.stderr

    return release


def _pbs_site(json_output: bool) -> SiteConfig:
    site = SiteConfig.load("test-pbs")
    options = site.pbs.model_copy(update={"json_output": json_output})
    return site.model_copy(update={"pbs": options})


def _no_wait(job_id: str) -> None:
    del job_id


HARNESSES = (
    [pytest.param("site", id=f"site:{Path(TEST_SITE).stem}")]
    if TEST_SITE
    else [
        "local",
        pytest.param("slurm", marks=pytest.mark.slurm),
        pytest.param("slurm-ssh", marks=[pytest.mark.slurm, pytest.mark.ssh]),
        pytest.param("slurm-rest", marks=pytest.mark.slurm),
        pytest.param("pbs-json", marks=pytest.mark.pbs),
        pytest.param("pbs-operator", marks=pytest.mark.pbs),
    ]
)
# The executor's tests run once more where the client does not share the cluster's files.
EXECUTOR_HARNESSES = (
    HARNESSES
    if TEST_SITE
    else [*HARNESSES, pytest.param("slurm-sftp", marks=[pytest.mark.slurm, pytest.mark.ssh])]
)


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "site":
        assert TEST_SITE is not None
        site = SiteConfig.load(TEST_SITE)
        with Cluster(site) as cluster:
            slurm = site.scheduler == "slurm"
            release = _slurm_release_requeued(cluster.transport) if slurm else _no_wait
            yield Harness(cluster, f"{site.scheduler}-site", release)
    elif request.param == "slurm-sftp":
        # slurm-sftp: as slurm-ssh, for a client that does not share the cluster's filesystem
        # (tests/contract/test_executor.py only).
        with Cluster(request.getfixturevalue("not_shared_site")) as cluster:
            yield Harness(cluster, request.param, _slurm_release_requeued(cluster.transport))
    elif request.param == "local":
        with Cluster.local(state_dir=tmp_path / "state") as cluster:
            yield Harness(cluster, "local", _no_wait)
    elif request.param.startswith("slurm"):
        # slurm-ssh: the same Slurm, every command through the loopback sshd (test-slurm-ssh);
        # slurm-rest: through its slurmrestd (test-slurm-rest).
        site_name = {"slurm": "test-slurm", "slurm-ssh": "test-slurm-ssh"}.get(
            request.param, "test-slurm-rest"
        )
        with Cluster.from_site(site_name) as cluster:
            yield Harness(cluster, request.param, _slurm_release_requeued(cluster.transport))
    else:
        # PBS as a plain user, as on a real site (root is a manager and may do anything), in
        # JSON; and as a server operator (who may qrerun), with the text qstat of older PBS.
        json_output = request.param == "pbs-json"
        emulator = request.getfixturevalue("pbs_emulator")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("PBS_EMULATOR_USER", "hpcuser")
        # PBS writes its own .o files to the submission folder: keep them out of the repo.
        monkeypatch.chdir(tmp_path)
        emulator.configure(json_output=json_output, operators=[] if json_output else ["hpcuser"])
        with Cluster(_pbs_site(json_output)) as cluster:
            yield Harness(cluster, request.param, _no_wait)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A folder the jobs write and the tests read: on a real site, one compute nodes share."""
    if not TEST_SITE:
        folder = tmp_path / "work"
        folder.mkdir()
        folder.chmod(0o777)  # Slurm jobs of any user may write it
        yield folder
        return
    parent = Path(os.environ.get("HPCBRIDGE_TEST_WORKDIR", ".")).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpcbridge-contract-", dir=parent) as folder:
        yield Path(folder)


def running(info: JobInfo) -> bool:
    return info.state is JobState.RUNNING
