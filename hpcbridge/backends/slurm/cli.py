"""Pure builders of Slurm command lines. Nothing here runs anything."""

from __future__ import annotations

from collections.abc import Sequence

from hpcbridge.models import Dependency

# A unit separator cannot appear in job names, reasons or comments typed by people, so
# splitting on it is exact even for jobs hpcbridge did not submit.
FIELD_SEPARATOR = "\x1f"

# squeue(1), -o: %i job id (base_index for array tasks), %F array base id, %K array index,
# %j name, %T extended state, %r reason, %N nodes, %P partition, %a account, %V submit
# time, %S start time, %e end time, %k comment.
SQUEUE_FIELDS = ("%i", "%F", "%K", "%j", "%T", "%r", "%N", "%P", "%a", "%V", "%S", "%e", "%k")
# sacct(1), --format: the same facts from the accounting database.
SACCT_FIELDS = (
    "JobID",
    "JobIDRaw",
    "JobName",
    "State",
    "ExitCode",
    "Reason",
    "NodeList",
    "Partition",
    "Account",
    "Submit",
    "Start",
    "End",
)

# Times printed in UTC so parsers never guess the cluster's time zone.
UTC_ENV = {"TZ": "UTC"}


def sbatch() -> list[str]:
    """Submit the script given on stdin; --parsable prints just "jobid[;cluster]"."""
    return ["sbatch", "--parsable"]


def squeue(job_ids: Sequence[str]) -> list[str]:
    """One call for every tracked job, finished ones still in memory included (--states=all)."""
    return [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        f"--jobs={','.join(job_ids)}",
        f"--format={FIELD_SEPARATOR.join(SQUEUE_FIELDS)}",
    ]


def squeue_by_name(name: str) -> list[str]:
    """Jobs of one name with their comment, to find a submission whose answer was lost."""
    return [
        "squeue",
        "--noheader",
        "--states=all",
        f"--name={name}",
        f"--format=%i{FIELD_SEPARATOR}%k",
    ]


def sacct(job_ids: Sequence[str]) -> list[str]:
    """The accounting record of jobs that left squeue; one line per job allocation."""
    return [
        "sacct",
        "--noheader",
        "--parsable2",
        f"--delimiter={FIELD_SEPARATOR}",
        "--allocations",
        f"--jobs={','.join(job_ids)}",
        f"--format={','.join(SACCT_FIELDS)}",
    ]


def scancel(job_ids: Sequence[str]) -> list[str]:
    """Cancel many jobs in one call; only --verbose makes scancel name unknown ids."""
    return ["scancel", "--verbose", *job_ids]


def scontrol(verb: str, job_ids: Sequence[str]) -> list[str]:
    """``scontrol hold|release|requeue`` for a comma-separated job list."""
    return ["scontrol", verb, ",".join(job_ids)]


def scontrol_ping() -> list[str]:
    """Ask whether the controller answers."""
    return ["scontrol", "ping"]


def dependency_expression(dependencies: Sequence[Dependency]) -> str:
    """sbatch(1) --dependency: ``afterok:1:2,afterany:3,singleton``; all must hold (',')."""
    parts: list[str] = []
    grouped: dict[str, list[str]] = {}
    for dependency in dependencies:
        if dependency.condition == "singleton":
            if "singleton" not in parts:
                parts.append("singleton")
            continue
        if dependency.condition not in grouped:
            grouped[dependency.condition] = []
            parts.append(dependency.condition)
        assert dependency.job is not None  # guaranteed by Dependency's validator
        grouped[dependency.condition].append(dependency.job)
    return ",".join(
        part if part == "singleton" else ":".join([part, *grouped[part]]) for part in parts
    )
