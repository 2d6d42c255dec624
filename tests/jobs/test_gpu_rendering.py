"""Matched GPU requests as scripts: the golden files pin the directives hardware matching
leads to, Slurm's gres type and constraint and PBS's GPU model resource."""

from __future__ import annotations

from typing import Any

from test_rendering import check_golden, render_pbs, render_slurm

from hpcbridge import JobSpec, SiteConfig
from hpcbridge.policy.hardware import place

CATALOGUE = [
    {
        "type": "a100",
        "memory": "80G",
        "features": ["fp64", "nvlink"],
        "per_node": 4,
        "cost": 3,
        "node_features": True,
    },
    {"type": "v100", "memory": "32G", "features": ["fp64"], "per_node": 4, "cost": 1},
]
JOB = {
    "name": "train",
    "command": "python train.py",
    "resources": {
        "nodes": 2,
        "ntasks": 2,
        "walltime": "4:00:00",
        "gpu": {"count": 4, "features": ["nvlink"]},
    },
}


def placed(scheduler: str, **options: Any) -> dict[str, Any]:
    """JOB matched on a one-partition site of ``scheduler``, as plain data for the renderers."""
    catalogue = (
        CATALOGUE
        if scheduler == "slurm"
        else [{**entry, "node_features": False} for entry in CATALOGUE]
    )
    site = SiteConfig.model_validate(
        {"name": "g", "scheduler": scheduler, "partitions": {"gpu": {"catalogue": catalogue}}}
        | options
    )
    return place(site, JobSpec.parse(JOB)).model_dump(exclude_defaults=True)


def test_slurm_gets_the_gres_type_and_the_node_features() -> None:
    script = render_slurm(placed("slurm"))
    check_golden("slurm_gpu_matched.sh", script)
    assert "#SBATCH --gres=gpu:a100:4\n#SBATCH --constraint=nvlink\n" in script


def test_pbs_gets_the_sites_gpu_model_resource() -> None:
    script = render_pbs(placed("pbs", pbs={"gpu_type_resource": "gpu_model"}))
    check_golden("pbs_gpu_matched.sh", script)
    assert "#PBS -l select=2:ncpus=1:ngpus=2:gpu_model=a100\n" in script
