"""Hardware matching on the PBS emulator (as a plain user): the catalogue of test-pbs's gpu
queue picks the type, and qsub is asked for it through the site's GPU model resource
(``gpu_model``, a custom resource of the emulated server, as a real site defines one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobSpec, JobState, SiteConfig, SpecError
from hpcbridge.policy.hardware import place

pytestmark = [pytest.mark.timeout(120), pytest.mark.pbs_config(custom_resources=["gpu_model"])]


@pytest.fixture
def cluster(pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.chdir(tmp_path)
    return Cluster(SiteConfig.load("test-pbs"))


def gpu_job(name: str, tmp_path: Path, gpu: dict[str, object]) -> JobSpec:
    return JobSpec.parse(
        {
            "name": name,
            "command": 'echo "gpus=$CUDA_VISIBLE_DEVICES"',
            "workdir": str(tmp_path),
            "stdout": f"{name}.out",
            "resources": {"walltime": "5:00", "gpu": gpu},
        }
    )


def test_the_matched_type_is_asked_of_pbs_by_its_resource_name(
    cluster: Cluster, pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    big = cluster.submit(place(cluster.site, gpu_job("big", tmp_path, {"min_memory": "40G"})))
    fp64 = place(cluster.site, gpu_job("fp64", tmp_path, {"count": 2, "features": ["fp64"]}))
    cheap = cluster.submit(fp64)
    ended = cluster.wait([big, cheap], timeout=60)
    assert {info.state for info in ended.values()} == {JobState.COMPLETED}
    for job_id, select in (
        (big, "1:ncpus=1:ngpus=1:gpu_model=a100"),
        (cheap, "1:ncpus=1:ngpus=2:gpu_model=v100"),
    ):
        job = pbs_emulator.job(job_id)
        assert job is not None
        assert (job["queue"], job["Resource_List"]["select"]) == ("gpu", select)
    assert (tmp_path / "fp64.out").read_text().strip() != "gpus="  # the emulator gave it GPUs


def test_cpu_jobs_stay_in_the_default_queue_and_impossible_requests_are_refused(
    cluster: Cluster, pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    cpu = cluster.submit({"name": "cpu", "command": "true", "workdir": str(tmp_path)})
    job = pbs_emulator.wait_for(cpu)
    assert job["queue"] == "workq"
    with pytest.raises(SpecError) as caught:
        place(cluster.site, gpu_job("many", tmp_path, {"count": 4}))
    assert str(caught.value) == (
        "resources.gpu.count: 4: no partition has nodes with 4 GPUs (most: 2 a100 in gpu)"
    )
