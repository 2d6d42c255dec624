"""Pure builders of Slurm command lines. Nothing here runs anything."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hpcbridge.jobs.sections import Dependency

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

# sacct(1) --format for the ledger (backends/slurm/accounting.py parses it): one line per job
# record, which --duplicates makes one per run of a requeued job, then one per step. Steps add
# MaxRSS, missing from the job line; DBIndex, the database row of a run, ties each step to its
# run, since every run of a requeued job repeats the same step names. JobID and DBIndex come
# first: they alone place a line, so the parser splits the rest only for job lines.
SACCT_LEDGER_FIELDS = (
    "JobID",
    "DBIndex",
    "JobName",
    "User",
    "Account",
    "Partition",
    "QOS",
    "Submit",
    "Eligible",
    "Start",
    "End",
    "ElapsedRaw",
    "State",
    "ExitCode",
    "Reason",
    "NodeList",
    "NNodes",
    "AllocCPUS",
    "AllocTRES",
    "TimelimitRaw",
    "ReqMem",
    "MaxRSS",
    "TotalCPU",
)
# Naming every state a job record can be stored with changes how sacct -S/-E select (Slurm
# 22.05 as_mysql_jobacct_process.c, _state_time_string): a job pending or running at some time
# in the window, or ending in it. Without --state, jobs cancelled before they were ever
# eligible (held, waiting on a dependency, a --begin still ahead) never match any window.
SACCT_ALL_STATES = (
    "PENDING",
    "RUNNING",
    "SUSPENDED",
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "REQUEUED",
    "RESIZING",
    "REVOKED",
)

# Times printed in UTC so parsers never guess the cluster's time zone.
UTC_ENV = {"TZ": "UTC"}


def sbatch() -> list[str]:
    """Submit the script given on stdin; --parsable prints just "jobid[;cluster]"."""
    return ["sbatch", "--parsable"]


def squeue(job_ids: Sequence[str]) -> list[str]:
    """One call for every tracked job, finished ones still in memory included (--states=all)."""
    return _squeue_status(f"--jobs={','.join(job_ids)}")


def squeue_mine() -> list[str]:
    """The same for every job of the user the command runs as (over SSH, the login's user):
    the listing a shared status snapshot holds (--me as in squeue(1) of Slurm 22.05)."""
    return _squeue_status("--me")


def _squeue_status(selection: str) -> list[str]:
    return [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        selection,
        f"--format={FIELD_SEPARATOR.join(SQUEUE_FIELDS)}",
    ]


def squeue_by_name(name: str) -> list[str]:
    """Jobs of one name with their comment, to find a submission whose answer was lost.

    %F is the id sbatch printed, an array's too (%i shows a pending one as "12_[0-9]").
    """
    return [
        "squeue",
        "--noheader",
        "--states=all",
        f"--name={name}",
        f"--format=%F{FIELD_SEPARATOR}%k",
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


def sacct_window(start: datetime, end: datetime) -> list[str]:
    """Every run of every user's jobs pending, running or ending in [start, end), with steps."""
    return [
        *_sacct_ledger(),
        "--allusers",
        f"--starttime={sacct_time(start)}",
        f"--endtime={sacct_time(end)}",
        f"--state={','.join(SACCT_ALL_STATES)}",
    ]


def sacct_history(job_ids: Sequence[str], end: datetime) -> list[str]:
    """Every run of some jobs submitted before ``end``, with all their steps.

    With --jobs and no --starttime, sacct starts at the epoch and filters on submission alone.
    """
    return [*_sacct_ledger(), f"--jobs={','.join(job_ids)}", f"--endtime={sacct_time(end)}"]


def sacct_time(moment: datetime) -> str:
    """A time as sacct prints and reads it under UTC_ENV: ISO 8601 in UTC, no zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _sacct_ledger() -> list[str]:
    return [
        "sacct",
        "--noheader",
        "--parsable2",
        f"--delimiter={FIELD_SEPARATOR}",
        "--duplicates",
        f"--format={','.join(SACCT_LEDGER_FIELDS)}",
    ]


def scancel(job_ids: Sequence[str]) -> list[str]:
    """Cancel many jobs in one call; only --verbose makes scancel name unknown ids."""
    return ["scancel", "--verbose", *job_ids]


def srun_step(
    job_id: str, command: Sequence[str], *, stdout: str, stderr: str, gpus: int = 0
) -> list[str]:
    """One task as a step of allocation ``job_id``: one task on one CPU (--exact takes only
    those, so steps run side by side) and ``gpus`` of the allocation's GPUs (--gres=gpu:N; on
    22.05 the step then sees only those in CUDA_VISIBLE_DEVICES, while a step asking for none
    sees them all), its output to the files given, srun's own chatter off. A step that does
    not fit waits inside srun until one ends."""
    return [
        "srun",
        f"--jobid={job_id}",
        "--exact",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=1",
        *([f"--gres=gpu:{gpus}"] if gpus else []),
        f"--output={stdout}",
        f"--error={stderr}",
        "--quiet",
        *command,
    ]


def scontrol_priority(job_ids: Sequence[str], qos: str | None, nice: int | None) -> list[str]:
    """``scontrol update`` of a comma-separated job list's QOS and/or nice, in one call."""
    changes = ([f"QOS={qos}"] if qos is not None else []) + (
        [f"Nice={nice}"] if nice is not None else []
    )
    return ["scontrol", "update", f"JobId={','.join(job_ids)}", *changes]


def scontrol(verb: str, job_ids: Sequence[str]) -> list[str]:
    """``scontrol hold|release|requeue`` for a comma-separated job list."""
    return ["scontrol", verb, ",".join(job_ids)]


def scontrol_show_job(job_id: str) -> list[str]:
    """One job on one line (parse.parse_job_tres reads its TRES, what it was allocated)."""
    return ["scontrol", "show", "job", "--oneliner", job_id]


def scontrol_show_config() -> list[str]:
    """The controller's configuration, where MaxArraySize is read from."""
    return ["scontrol", "show", "config"]


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
