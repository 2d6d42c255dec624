"""Hardware matching on the real test Slurm, whose node has 2 a100 and 2 v100 (fake) GPUs and
whose site config catalogues them: a100 80G with fp64 and tensor cores at cost 3, v100 32G
with fp64 at cost 1. A request by memory must land on the a100s, one by feature on the
cheaper v100s, through sbatch and through slurmrestd alike; sacct's AllocTRES and the job's
own view (scontrol's GRES with indices: a100 on 0-1, v100 on 2-3) say which type it got."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hpcbridge import Cluster, JobSpec, JobState
from hpcbridge.cli.main import main
from hpcbridge.policy.hardware import place

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


def gpu_job(name: str, workdir: Path, gpu: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        # the node's line of the job's details: which GPUs, by index, it was given
        "command": 'scontrol show job "$SLURM_JOB_ID" --details | grep -o "GRES=[^ ]*(IDX:[^)]*)"',
        "workdir": str(workdir),
        "stdout": f"{name}-%j.out",
        "resources": {"walltime": "2:00", "gpu": gpu},
    }


def alloc_tres(job_id: str) -> str:
    """The job's AllocTRES once slurmdbd holds it (written as the job starts, a moment late)."""
    deadline = time.monotonic() + 30
    while True:
        row = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "AllocTRES"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if "gres/gpu" in row or time.monotonic() > deadline:
            return row
        time.sleep(1)


@pytest.mark.parametrize("site", ["test-slurm", "test-slurm-rest"])
def test_memory_lands_on_a100_and_a_feature_on_the_cheaper_v100(
    site: str, workdir: Path, tmp_path: Path
) -> None:
    # by the CLI, as users submit: 40G per GPU only the a100s have
    job_file = tmp_path / "big.yaml"
    job_file.write_text(yaml.safe_dump(gpu_job("big-gpu", workdir, {"min_memory": "40G"})))
    result = CliRunner().invoke(main, ["submit", str(job_file), "--site", site, "--json"])
    assert result.exit_code == 0, result.output
    big = json.loads(result.stdout)["job_id"]
    # by the Python API: fp64, which both have, so the cheaper v100
    spec = JobSpec.parse(gpu_job("fp64-gpu", workdir, {"count": 2, "features": ["fp64"]}))
    with Cluster.from_site(site) as cluster:
        fp64 = cluster.submit(place(cluster.site, spec))
        ended = cluster.wait([big, fp64], timeout=120)
    assert {info.state for info in ended.values()} == {JobState.COMPLETED}
    assert "gres/gpu:a100=1" in alloc_tres(big).split(",")
    assert "gres/gpu:v100=2" in alloc_tres(fp64).split(",")
    assert (workdir / f"big-gpu-{big}.out").read_text() in (
        "GRES=gpu:a100:1(IDX:0)\n",
        "GRES=gpu:a100:1(IDX:1)\n",
    )
    assert (workdir / f"fp64-gpu-{fp64}.out").read_text() == "GRES=gpu:v100:2(IDX:2-3)\n"


def test_an_impossible_request_is_refused_before_slurm_sees_it(tmp_path: Path) -> None:
    job_file = tmp_path / "huge.yaml"
    job_file.write_text(yaml.safe_dump(gpu_job("huge", tmp_path, {"min_memory": "100G"})))
    result = CliRunner().invoke(main, ["submit", str(job_file), "--site", "test-slurm"])
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        "error: resources.gpu.min_memory: 100G: no partition has GPUs with that much memory "
        "(largest: a100 80G in debug)"
    )
