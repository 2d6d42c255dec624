"""Packing many jobs into job arrays: which jobs may share one, and what each task reads.

A sweep of 1,000 runs submitted one ``sbatch`` at a time costs 1,000 controller calls. Jobs
that differ only in their command and environment can be one array instead: the array's
script is the jobs' shared part, and each task sources its own values (its environment, and
its command where those differ) from a parameters file by its array index. The file is
rendered with the one quoting filter, so a value is data in it, never code.

Everything here is pure; hpcbridge.cluster writes the files and submits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpcbridge.jobs.rendering import Renderer, job_body
from hpcbridge.jobs.spec import JobSpec

# What each item may change; everything else must be equal for two jobs to share an array.
_PER_TASK_FIELDS = frozenset({"command", "script", "env"})
# The body of an array whose tasks run different commands: each task's command, quoted in the
# parameters file, is run here as the job's own shell code, as the command of a single job is.
RUN_TASK_COMMAND = 'eval "$hpcbridge_sweep_command"'
PARAMETERS_TEMPLATE = "common/sweep.sh.j2"


@dataclass(frozen=True)
class TaskValues:
    """What one array task sets before it runs: its environment, and its own command when
    the tasks of its array do not all run the same one."""

    env: dict[str, str]
    command: str | None


@dataclass(frozen=True)
class Chunk:
    """One submission: a plain job (``tasks`` empty), or an array whose task ``i`` is item
    ``positions[i]`` of the submitted list and reads ``tasks[i]``."""

    spec: JobSpec
    positions: tuple[int, ...]
    tasks: tuple[TaskValues, ...] = ()

    @property
    def is_array(self) -> bool:
        """Whether this chunk is submitted as an array."""
        return bool(self.tasks)


def plan(specs: Sequence[JobSpec], *, max_array_size: int | None, limit: int | None) -> list[Chunk]:
    """The submissions for ``specs``: each group of jobs that may share an array becomes one
    array, or several of at most ``max_array_size`` tasks (split evenly); ``limit`` caps how
    many tasks of each array run at once. A job alone, one that is an array already or one
    with a checkpoint wrapper (whose directory its tasks would share) is submitted as it is.
    """
    groups: dict[str, list[int]] = {}
    chunks: list[Chunk] = []
    for position, spec in enumerate(specs):
        if spec.array is not None or spec.checkpoint is not None:
            chunks.append(Chunk(spec, (position,)))
        else:
            groups.setdefault(_shared_part(spec), []).append(position)
    for positions in groups.values():
        for part in _split(positions, max_array_size):
            members = [specs[p] for p in part]
            if len(part) == 1:
                chunks.append(Chunk(members[0], part))
            else:
                chunks.append(_array_chunk(members, part, limit))
    return sorted(chunks, key=lambda chunk: chunk.positions[0])


def render_parameters(renderer: Renderer, tasks: Sequence[TaskValues]) -> str:
    """The parameters file of an array: a ``case`` on the task index (its first argument)
    that exports the task's values, every one through the quoting filter."""
    return renderer.render_text(PARAMETERS_TEMPLATE, tasks=tasks)


def _split(positions: list[int], largest: int | None) -> list[tuple[int, ...]]:
    """As few parts of at most ``largest`` as can be, their sizes differing by one at most
    (7 by 3: 3, 2, 2, not 3, 3, 1), so that no part is left a lone job for want of a task."""
    count = 1 if largest is None else math.ceil(len(positions) / largest)
    size, extra = divmod(len(positions), count)
    parts: list[tuple[int, ...]] = []
    start = 0
    for number in range(count):
        end = start + size + (1 if number < extra else 0)
        parts.append(tuple(positions[start:end]))
        start = end
    return parts


def _shared_part(spec: JobSpec) -> str:
    return spec.model_dump_json(exclude=set(_PER_TASK_FIELDS))


def _array_chunk(members: list[JobSpec], positions: tuple[int, ...], limit: int | None) -> Chunk:
    bodies = [str(job_body(spec)) for spec in members]
    same_body = len(set(bodies)) == 1
    tasks = tuple(
        TaskValues(env=dict(spec.env), command=None if same_body else body)
        for spec, body in zip(members, bodies, strict=True)
    )
    array = f"0-{len(members) - 1}" + (f"%{limit}" if limit else "")
    update: dict[str, Any] = {"array": array, "env": {}}
    if not same_body:
        update.update(command=RUN_TASK_COMMAND, script=None)
    return Chunk(members[0].model_copy(update=update), positions, tasks)
