"""Pure builders of PBS command lines and directive values. Nothing here runs anything."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import datetime

from hpcbridge.errors import SpecError
from hpcbridge.jobs.rendering import ShellCode
from hpcbridge.jobs.sections import Dependency
from hpcbridge.jobs.spec import JobSpec

# qsub(1B) -J: "X-Y[:Z]" (one range with an optional step) and, since OpenPBS 20, "%N" for
# the number of subjobs that may run at once (max_run_subjobs).
_PBS_ARRAY = re.compile(r"\d+-\d+(:\d+)?(%\d+)?", re.ASCII)
# PBS priorities run from -1024 to 1023, higher first (qsub(1B) -p).
_PRIORITY_RANGE = range(-1024, 1024)
# A PBS job id: sequence number, optional array brackets, optional server name.
_PBS_JOB_ID = re.compile(r"\d+(\[\d*\])?(\.[\w.-]+)?", re.ASCII)
# Slurm's filename patterns, rewritten to the PBS variables that hold the same values: the
# ids come out as hpcbridge reports them ("12.server", "10[].server").
_OUTPUT_PATTERNS = {
    "%j": "${PBS_JOBID}",
    "%A": "${PBS_ARRAY_ID}",
    "%a": "${PBS_ARRAY_INDEX}",
    "%x": "${PBS_JOBNAME}",
}
_PATTERN = re.compile(r"%[jAax%]")


def qsub() -> list[str]:
    """Submit the script given on stdin; qsub prints the new job id."""
    return ["qsub"]


def qstat(job_ids: Sequence[str], *, json: bool, history: bool) -> list[str]:
    """Full status of many jobs in one call; -t lists array subjobs, -x finished jobs."""
    argv = ["qstat", "-f"]
    if history:
        argv.append("-x")
    argv.append("-t")
    if json:
        argv += ["-F", "json"]
    return [*argv, *job_ids]


def qstat_all(*, json: bool, history: bool) -> list[str]:
    """Every job the server reports, to find a submission whose answer was lost."""
    return qstat([], json=json, history=history)


def job_command(program: str, job_ids: Sequence[str]) -> list[str]:
    """qdel, qhold, qrls and qrerun all take a list of job ids."""
    return [program, *job_ids]


def qalter_priority(job_ids: Sequence[str], priority: int) -> list[str]:
    """Change the priority of queued jobs."""
    return ["qalter", "-p", str(priority), *job_ids]


def qstat_server() -> list[str]:
    """Server status, to check that pbs_server answers."""
    return ["qstat", "-B"]


def qstat_server_full() -> list[str]:
    """The server's attributes, where max_array_size is read from."""
    return ["qstat", "-B", "-f"]


def select_statement(spec: JobSpec, gpu_type_resource: str | None) -> str:
    """``-l select``: one chunk per node with its share of tasks, CPUs, memory and GPUs.

    PBS has no standard resource for the GPU model; sites define one (``gpu_type_resource``).
    """
    resources = spec.resources
    nodes = resources.nodes
    if resources.ntasks % nodes:
        raise SpecError(
            f"resources.ntasks: {resources.ntasks} tasks do not split evenly over {nodes} "
            "nodes, which PBS select chunks need"
        )
    tasks_per_node = resources.ntasks // nodes
    parts = [str(nodes), f"ncpus={tasks_per_node * resources.cpus_per_task}"]
    if tasks_per_node > 1:
        parts.append(f"mpiprocs={tasks_per_node}")
    if resources.memory:
        parts.append(f"mem={resources.memory}mb")
    if resources.gpus:
        if resources.gpus % nodes:
            raise SpecError(
                f"resources.gpus: {resources.gpus} GPUs do not split evenly over {nodes} nodes"
            )
        parts.append(f"ngpus={resources.gpus // nodes}")
        if resources.gpu_type:
            if gpu_type_resource is None:
                raise SpecError(
                    f"resources.gpu_type: {resources.gpu_type!r} cannot be asked for: the site "
                    "config names no PBS resource for GPU models (pbs.gpu_type_resource)"
                )
            parts.append(f"{gpu_type_resource}={resources.gpu_type}")
    return ":".join(parts)


def dependency_expression(dependencies: Sequence[Dependency]) -> ShellCode:
    """``-W depend=afterok:1.srv:2.srv,afterany:3.srv``; PBS has no singleton.

    Job ids are checked against PBS's id grammar, so the expression is one safe word even
    with array brackets, which shell quoting would wrap in quotes qsub keeps literally.
    """
    grouped: dict[str, list[str]] = {}
    for dependency in dependencies:
        if dependency.condition == "singleton":
            raise SpecError("depends_on: PBS has no singleton dependency")
        assert dependency.job is not None  # guaranteed by Dependency's validator
        if not _PBS_JOB_ID.fullmatch(dependency.job):
            raise SpecError(f"depends_on: {dependency.job!r} is not a PBS job id (12.server)")
        grouped.setdefault(dependency.condition, []).append(dependency.job)
    return ShellCode(",".join(":".join([cond, *jobs]) for cond, jobs in grouped.items()))


def array_range(spec: JobSpec) -> str | None:
    """``-J``: PBS takes a single range, so lists such as 1,3,5 are refused."""
    if spec.array is None:
        return None
    if not _PBS_ARRAY.fullmatch(spec.array):
        raise SpecError(
            f"array: {spec.array!r} is not a PBS array; PBS takes one range X-Y[:STEP][%LIMIT]"
        )
    return spec.array


def priority(nice: int | None) -> int | None:
    """``-p``: Slurm's nice lowers priority as it grows, PBS's priority raises it."""
    if nice is None:
        return None
    value = -nice
    if value not in _PRIORITY_RANGE:
        raise SpecError(f"nice: {nice} is outside PBS's priority range -1023..1024")
    return value


def begin_time(moment: datetime) -> str:
    """``-a``: [[CC]YY]MMDDhhmm[.SS] in the server's local time."""
    local = moment.astimezone() if moment.tzinfo else moment
    return local.strftime("%Y%m%d%H%M.%S")


def output_word(pattern: str) -> ShellCode:
    """A shell word for an output path, with Slurm's %j/%A/%a/%x turned into PBS variables.

    PBS expands none of these itself, so the job script redirects its own output; the
    literal parts are quoted, the variable parts are fixed expansions.
    """
    pieces: list[str] = []
    position = 0
    for match in _PATTERN.finditer(pattern):
        pieces.append(_quote(pattern[position : match.start()]))
        token = match.group()
        pieces.append(_quote("%") if token == "%%" else f'"{_OUTPUT_PATTERNS[token]}"')
        position = match.end()
    pieces.append(_quote(pattern[position:]))
    return ShellCode("".join(piece for piece in pieces if piece))


def _quote(text: str) -> str:
    return shlex.quote(text) if text else ""
