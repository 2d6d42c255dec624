"""Cluster.allocation inside a PBS job on the emulator: calls run as processes of the job on
its host, NCPUS at once, the rest waiting; a job over several hosts, GPUs per call and a
process outside any job are refused, naming why.

The job is submitted as the emulator's plain user and runs
tests/executor/pbs_allocation_driver.py as its Python, so the emulator's MoM sets the job's
variables (PBS_JOBID, NCPUS, PBS_NODEFILE) as OpenPBS's does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from allocation_calls import most_at_once
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobSpec, JobState, SiteConfig
from hpcbridge.errors import ConfigError, SpecError

pytestmark = [pytest.mark.pbs, pytest.mark.timeout(180)]
DRIVER = Path(__file__).with_name("pbs_allocation_driver.py")


@pytest.fixture
def cluster(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    monkeypatch.chdir(tmp_path)  # PBS writes its .o files where the job was submitted
    pbs_emulator.configure(operators=[])
    with Cluster(SiteConfig.load("test-pbs")) as pbs:
        yield pbs


def test_calls_run_in_the_job_ncpus_at_once_and_an_exception_comes_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    spec = JobSpec.parse(
        {
            "name": "allocation",
            "command": f"{sys.executable} {DRIVER} {out} 12 5",
            "resources": {"cpus_per_task": 4, "walltime": "0:05:00"},
            "workdir": str(tmp_path),
        }
    )
    job_id = cluster.submit(spec)
    info = cluster.wait([job_id], timeout=150)[job_id]
    assert info.state is JobState.COMPLETED, (info, list(tmp_path.glob("*.o*")))
    report = json.loads(out.read_text())

    assert report["workers"] == 4  # the job's NCPUS
    results = report["results"]
    assert [r["index"] for r in results] == list(range(12))  # in order
    assert results[5] == {"index": 5, "raised": "call 5 failed on purpose"}
    ran = [r for r in results if "raised" not in r]
    assert {r["job"] for r in ran} == {report["job"]}  # inside the job, not queued anew
    assert len({r["pid"] for r in ran}) == 11  # a process each
    assert 2 <= most_at_once(ran) <= 4  # side by side, never more than NCPUS


def test_a_job_over_several_hosts_is_refused_naming_them(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = tmp_path / "nodefile"
    nodes.write_text("node01\nnode01\nnode02\n")  # as MoM writes it: a line per MPI process
    monkeypatch.setenv("PBS_JOBID", "12.server")
    monkeypatch.setenv("PBS_NODEFILE", str(nodes))
    with pytest.raises(ConfigError, match=r"PBS job 12.server spans 2 hosts \(node01, node02\)"):
        cluster.allocation()
    with pytest.raises(SpecError, match="gpus_per_call=1: GPUs are packed onto calls on Slurm"):
        cluster.allocation(gpus_per_call=1)


def test_outside_a_pbs_job_it_is_refused(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PBS_JOBID", raising=False)
    with pytest.raises(ConfigError, match="PBS_JOBID is not set here"):
        cluster.allocation()
