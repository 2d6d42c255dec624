"""Months-long runs as chains of walltime-sized segments, on the scheduler's own dependencies.

A job whose ``checkpoint.total_runtime`` exceeds what its partition allows becomes a workflow
of segments, each waiting ``afterok`` on the one before. Every segment runs the checkpoint
wrapper with ``on_limit: exit``: at the warning signal it checkpoints and ends COMPLETED, so
the next segment starts and restarts from the newest valid checkpoint. A segment that fails
breaks the chain there (the scheduler cancels the rest, as for any workflow), and ``workflow
resume`` carries on from the last checkpoint.

The count is planned, not open-ended: each segment contributes its walltime less the warning
lead (the time reserved for the final checkpoint; on Slurm also the minute by which the
warning may come early), and a plan needing more segments than
``checkpoint.max_segments`` is refused before anything is submitted. When the work finishes
early, the wrapper leaves a ``finished`` mark in the checkpoint directory and the segments
still queued end at once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from hpcbridge.errors import SpecError
from hpcbridge.jobs.sections import Dependency
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.units import format_duration

# sbatch(1), --signal: "the signal may be sent up to 60 seconds earlier than specified", so on
# Slurm a segment is planned to do that much less work; a spare segment costs only its start.
SLURM_EARLY_SIGNAL_S = 60

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import SiteConfig
    from hpcbridge.workflows.model import Workflow
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore


def needs_segments(spec: JobSpec) -> bool:
    """True for a job that asks for a total runtime, i.e. is meant to run as a chain."""
    return spec.checkpoint is not None and spec.checkpoint.total_runtime is not None


def plan_segments(spec: JobSpec, site: SiteConfig) -> Workflow:
    """The chain of segments for ``spec``, checked against the partition and the cap."""
    from hpcbridge.workflows.model import Workflow

    checkpoint = spec.checkpoint
    if checkpoint is None or checkpoint.total_runtime is None:
        raise SpecError(f"job {spec.name}: checkpoint.total_runtime is needed for a segment chain")
    if spec.depends_on:
        raise SpecError(
            f"job {spec.name}: depends_on is not supported on a segment chain; make the chain's "
            "first job wait by other means (e.g. begin) or use a workflow"
        )
    walltime = _segment_walltime(spec, site)
    lead = checkpoint.signal.seconds + (SLURM_EARLY_SIGNAL_S if site.scheduler == "slurm" else 0)
    work_per_segment = walltime - lead
    if work_per_segment <= 0:
        raise SpecError(
            f"checkpoint.signal: a lead of {lead} s leaves no time for work in segments of "
            f"{format_duration(walltime)}"
        )
    count = math.ceil(checkpoint.total_runtime / work_per_segment)
    if count > checkpoint.max_segments:
        raise SpecError(
            f"checkpoint.total_runtime: {format_duration(checkpoint.total_runtime)} needs {count} "
            f"segments of {format_duration(walltime)} (each less {lead} s for its last "
            f"checkpoint), more than checkpoint.max_segments={checkpoint.max_segments}"
        )
    segment = spec.model_copy(
        update={
            "checkpoint": checkpoint.model_copy(update={"on_limit": "exit", "total_runtime": None}),
            "resources": spec.resources.model_copy(update={"walltime": walltime}),
        }
    )
    stages = [
        segment.model_copy(
            update={
                "name": _segment_name(index, count),
                "env": {
                    **spec.env,
                    "HPCBRIDGE_SEGMENT": str(index),
                    "HPCBRIDGE_SEGMENTS": str(count),
                },
                "depends_on": [Dependency(job=_segment_name(index - 1, count))]
                if index > 1
                else [],
            }
        )
        for index in range(1, count + 1)
    ]
    return Workflow(name=spec.name, stages=tuple(stages))


def workflow_from_file(path: str | Path, site: SiteConfig) -> Workflow:
    """A workflow file's stages, the segments of a job file that asks for a total runtime, or
    the preview and rest arrays of a job file with ``preview``.

    ``hpcbridge workflow submit`` takes either, so a months-long run is submitted, watched and
    resumed with the same commands as any workflow. GPUs asked for by need are matched to the
    site's partitions here (hpcbridge.policy.hardware), so the record keeps where each stage
    went and a resume sends it there again.
    """
    from hpcbridge.policy.hardware import place
    from hpcbridge.workflows.model import Workflow

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        data = None  # from_yaml below reports it, with the reason
    if isinstance(data, dict) and "stages" not in data and "preview" in data:
        from hpcbridge.workflows.preview import plan_preview

        return plan_preview(place(site, JobSpec.from_yaml(path)), site)
    if isinstance(data, dict) and "stages" not in data and "checkpoint" in data:
        return plan_segments(place(site, JobSpec.from_yaml(path)), site)
    workflow = Workflow.from_yaml(path)
    placed = tuple(place(site, stage) for stage in workflow.stages)
    return workflow.model_copy(update={"stages": placed})


def submit_segments(
    cluster: Cluster,
    spec: JobSpec,
    store: WorkflowStore,
    *,
    site: str | None = None,
    ledger: Ledger | None = None,
) -> WorkflowRecord:
    """Plan the chain and submit it as a workflow, so ``workflow status|resume`` follow it;
    with a ``ledger`` every segment's worst case is checked against the budget first."""
    from hpcbridge.workflows.run import submit_workflow

    return submit_workflow(
        cluster, plan_segments(spec, cluster.site), store, site=site, ledger=ledger
    )


def _segment_walltime(spec: JobSpec, site: SiteConfig) -> int:
    """The walltime asked for, capped at the partition's maximum; one of them must be known."""
    partition_name = spec.partition or site.default_partition
    partition = site.partitions.get(partition_name) if partition_name else None
    limit = partition.max_walltime if partition else None
    asked = spec.resources.walltime
    if asked is None and limit is None:
        raise SpecError(
            f"job {spec.name}: resources.walltime is not set and partition {partition_name} of "
            f"site {site.name} has no max_walltime; one of them must size the segments"
        )
    return min(value for value in (asked, limit) if value is not None)


def _segment_name(index: int, count: int) -> str:
    return f"seg{index:0{len(str(count))}d}"
