"""Progressive output: an array with ``preview`` becomes a workflow of two arrays, a coarse
one at a higher level first and the rest after it (or alongside), so results arrive
coarse-to-fine; ``outputs`` says where each index's result lands, so "done" means the file
is there, and the missing indices can be submitted again as one array.

The order comes from the scheduler's own knobs: the rest waits on the preview with
``afterany`` (it runs even if a preview frame fails), and the preview gets the site's
highest priority level, which also puts it ahead of other work in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpcbridge.errors import SpecError, WorkflowError

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.site import SiteConfig
    from hpcbridge.workflows.model import Workflow
    from hpcbridge.workflows.store import WorkflowRecord

PREVIEW, REST = "preview", "rest"


@dataclass(frozen=True)
class Frames:
    """Which indices of a preview workflow have their output, and which do not."""

    total: int
    done: list[int]
    missing: list[int]

    @property
    def missing_text(self) -> str:
        """The missing indices as an array range ("3,12-14"), empty when none."""
        return array_text(self.missing) if self.missing else ""


def plan_preview(spec: JobSpec, site: SiteConfig) -> Workflow:
    """The two-stage workflow of an array with ``preview`` (named after the job)."""
    from hpcbridge.workflows.model import Workflow

    preview = spec.preview
    if preview is None:
        raise SpecError(f"job {spec.name} has no preview")
    indices = spec.array_indices()
    if preview.every is not None:
        coarse = indices[:: preview.every]
    else:
        coarse = [index for index in indices if index in set(preview.first)]
    rest = [index for index in indices if index not in set(coarse)]
    levels = list(site.priorities.levels)
    level = preview.level or (levels[-1] if levels else None)
    if level is not None:
        site.priorities.level(level, site.name)  # an unknown level names the site's
    limit = spec.array_limit()
    base = spec.model_dump(exclude_unset=True, exclude={"preview", "name", "array"})
    stages = [{**base, "name": PREVIEW, "array": array_text(coarse, limit)}]
    if level is not None:
        stages[0]["priority"] = level
    if rest:
        after = {"depends_on": f"afterany:{PREVIEW}"} if preview.then == "after" else {}
        stages.append({**base, **after, "name": REST, "array": array_text(rest, limit)})
    return Workflow.parse({"name": spec.name, "stages": stages}, source=f"job {spec.name}")


def frames(record: WorkflowRecord) -> Frames:
    """Each index of the workflow's arrays, done when its output file exists and is not
    empty. The files must be visible from here (a shared filesystem, or the login node)."""
    indices: dict[int, Path] = {}
    for stage in record.workflow.stages:
        if stage.outputs is None:
            raise WorkflowError(
                f"workflow {record.workflow_id}: stage {stage.name} has no outputs pattern, "
                "so there is nothing to check"
            )
        for index in stage.array_indices():
            indices[index] = output_path(stage, index)
    done = sorted(index for index, path in indices.items() if _written(path))
    missing = sorted(set(indices) - set(done))
    return Frames(len(indices), done, missing)


def resubmit_missing(cluster: Cluster, record: WorkflowRecord, found: Frames) -> str | None:
    """One array of the missing indices (the rest stage's job, at its own level); None when
    nothing is missing."""
    if not found.missing:
        return None
    stages = record.workflow.by_name
    template = stages.get(REST) or stages[PREVIEW]
    spec = template.model_copy(
        update={
            "array": array_text(found.missing, template.array_limit()),
            "depends_on": [],
            "name": record.workflow.job_name("redo"),
        }
    )
    return cluster.submit(spec)


def output_path(spec: JobSpec, index: int) -> Path:
    """Where index ``index`` of ``spec`` writes its result."""
    assert spec.outputs is not None
    path = Path(spec.outputs.format(index=index))
    return path if path.is_absolute() else Path(spec.workdir or ".") / path


def array_text(indices: list[int], limit: int | None = None) -> str:
    """The array spelling of ``indices`` (runs become ranges: 2-10,12-20), with %limit."""
    ordered = sorted(set(indices))
    parts: list[str] = []
    start = previous = ordered[0]
    for index in [*ordered[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    return ",".join(parts) + (f"%{limit}" if limit else "")


def _written(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
