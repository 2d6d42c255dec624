"""What an account's queued and running jobs may still use, from one scheduler call.

A budget check needs every unfinished job of an account with its cores, GPUs and the time
it may still run; ``status`` answers for known ids only, so this asks the scheduler for the
account's whole queue once: ``squeue --account`` (one line per array task) or ``qstat -f -t``
(every job, subjobs included, filtered here). Commands run through the backend's own
SchedulerCommands, so retries and error wording are the backend's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcbridge.cluster import Cluster
from hpcbridge.errors import ConfigError, SchedulerError
from hpcbridge.jobs.units import is_decimal, memory_megabytes, parse_duration

# squeue(1) -o: %i id, %a account, %u user, %T state, %r reason, %C CPUs (requested while
# pending, allocated once running), %D nodes, %b GRES per node ("gres:gpu:a100:2"), %L time
# left (the limit while pending; UNLIMITED or NOT_SET without one), %l time limit, %M time
# used, %q QOS, %y nice, %m memory asked per node, %j name (last: the one free-text field).
_SQUEUE_FORMAT = (
    "%i",
    "%a",
    "%u",
    "%T",
    "%r",
    "%C",
    "%D",
    "%b",
    "%L",
    "%l",
    "%M",
    "%q",
    "%y",
    "%m",
    "%j",
)
_SEPARATOR = "\x1f"
# Jobs that may still use time; COMPLETING ones have ended.
_SQUEUE_STATES = "PENDING,RUNNING,SUSPENDED,CONFIGURING,REQUEUED"
_RUNNING_STATES = frozenset({"RUNNING", "SUSPENDED", "CONFIGURING"})
# PBS job_state letters (parse.PBS_STATES): queued, held, waiting, in transit; running.
_PBS_QUEUED = frozenset("QHWTM")
_PBS_RUNNING = frozenset("RSU")


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One unfinished job or array task and what it may still use."""

    job_id: str
    account: str | None
    user: str | None
    running: bool
    reason: str | None
    cores: int
    gpus: int
    seconds_left: int | None  # None: no time limit, so no bound
    name: str | None = None
    limit_s: int | None = None  # the walltime asked for (None: none)
    used_s: int = 0  # run so far
    qos: str | None = None  # the priority knobs it has now (PBS: nice is -Priority)
    nice: int | None = None
    mem_mb: float | None = None  # memory asked for, in all
    cpu_used_s: float | None = None  # CPU time and peak memory so far, where the queue says
    mem_used_mb: float | None = None

    @property
    def held(self) -> bool:
        """Held by a user or an administrator (a budget hold is a user hold)."""
        return not self.running and (self.reason or "").startswith("JobHeld")


def account_queue(cluster: Cluster, account: str | None = None) -> list[QueuedJob]:
    """Every unfinished job of ``account`` (None: of every account), from one call."""
    from hpcbridge.backends.pbs import PbsBackend
    from hpcbridge.backends.slurm import SlurmBackend

    backend = cluster.backend
    if isinstance(backend, SlurmBackend):
        result = backend.commands.run(squeue_queue(account), env={"TZ": "UTC"})
        return parse_squeue_queue(result.stdout)
    if isinstance(backend, PbsBackend):
        argv = _qstat_all(json=backend.json_output)
        result = backend.commands.run(argv, env={"TZ": "UTC"}, missing_ok=True)
        return parse_qstat_queue(result.stdout, json=backend.json_output, account=account)
    raise ConfigError(
        f"site {cluster.site.name}: budgets need a Slurm or PBS queue to count what jobs have "
        f"committed; the {backend.name} backend has none"
    )


def squeue_queue(account: str | None) -> list[str]:
    """``squeue`` of every unfinished job (of one account), one line per array task."""
    argv = [
        "squeue",
        "--noheader",
        "--array",
        f"--states={_SQUEUE_STATES}",
        f"--format={_SEPARATOR.join(_SQUEUE_FORMAT)}",
    ]
    return argv if account is None else [*argv, f"--account={account}"]


def parse_squeue_queue(stdout: str) -> list[QueuedJob]:
    """Lines of :func:`squeue_queue`."""
    jobs = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(_SEPARATOR)]
        if len(fields) != len(_SQUEUE_FORMAT):
            raise SchedulerError(f"expected {len(_SQUEUE_FORMAT)} fields from squeue: {line!r}")
        job_id, account, user, state, reason, cpus, nodes, gres, left = fields[:9]
        limit, used, qos, nice, memory, name = fields[9:]
        jobs.append(
            QueuedJob(
                job_id=job_id,
                account=account or None,
                user=user or None,
                running=state in _RUNNING_STATES,
                reason=None if reason in ("", "None") else reason,
                cores=int(cpus) if is_decimal(cpus) else 0,
                gpus=_gres_gpus(gres) * (int(nodes) if is_decimal(nodes) else 1),
                seconds_left=_slurm_seconds(left),
                name=name or None,
                limit_s=_slurm_seconds(limit),
                used_s=_slurm_seconds(used) or 0,
                qos=qos or None,
                nice=_integer(nice),
                mem_mb=_slurm_memory(memory, nodes),
            )
        )
    return jobs


def parse_qstat_queue(stdout: str, *, json: bool, account: str | None) -> list[QueuedJob]:
    """Unfinished jobs and subjobs of ``account`` in ``qstat -f -t`` output (array parents
    stand for their subjobs, which are listed too)."""
    from hpcbridge.backends.pbs import parse

    listed = parse.parse_qstat_json(stdout) if json else parse.parse_qstat_text(stdout)
    # A held array's subjobs stay Q, but none starts until the array is released: held.
    held_arrays = {
        job_id: parse.job_info(job_id, attributes).reason
        for job_id, attributes in listed.items()
        if parse.is_array_parent(attributes) and attributes.get("job_state") == "H"
    }
    jobs = []
    for job_id, attributes in listed.items():
        letter = str(attributes.get("job_state", ""))
        owner = parse.account_of(attributes)
        if parse.is_array_parent(attributes) or letter not in _PBS_QUEUED | _PBS_RUNNING:
            continue
        if account is not None and owner != account:
            continue
        held_by = held_arrays.get(parse.split_subjob(job_id)[0]) if letter == "Q" else None
        jobs.append(_pbs_job(job_id, letter, owner, attributes, reason=held_by))
    return jobs


def _pbs_job(
    job_id: str,
    letter: str,
    account: str | None,
    attributes: Mapping[str, Any],
    *,
    reason: str | None = None,
) -> QueuedJob:
    from hpcbridge.backends.pbs import parse

    limit = parse.duration_seconds(attributes.get("Resource_List.walltime"))
    used = parse.duration_seconds(attributes.get("resources_used.walltime")) or 0
    info = parse.job_info(job_id, attributes)
    priority = _integer(str(attributes.get("Priority", "")))
    return QueuedJob(
        job_id=job_id,
        account=account,
        user=str(attributes.get("Job_Owner", "")).partition("@")[0] or None,
        running=letter in _PBS_RUNNING,
        reason=reason or info.reason,
        cores=parse.as_int(attributes.get("Resource_List.ncpus")) or 0,
        gpus=parse.as_int(attributes.get("Resource_List.ngpus")) or 0,
        seconds_left=None if limit is None else max(0, limit - used),
        name=str(attributes.get("Job_Name", "")) or None,
        limit_s=limit,
        used_s=used,
        nice=None if priority is None else -priority,
        mem_mb=parse.size_megabytes(attributes.get("Resource_List.mem")),
        cpu_used_s=parse.duration_seconds(attributes.get("resources_used.cput")),
        mem_used_mb=parse.size_megabytes(attributes.get("resources_used.mem")),
    )


def _qstat_all(*, json: bool) -> list[str]:
    from hpcbridge.backends.pbs import cli

    return cli.qstat_all(json=json, history=False)


@functools.lru_cache(maxsize=256)
def _gres_gpus(gres: str) -> int:
    """GPUs per node in squeue's %b: "gres:gpu:2", "gres:gpu:a100:1", comma-separated."""
    total = 0
    for item in gres.split(","):
        parts = item.split(":")
        if parts[0] == "gres":
            parts = parts[1:]
        if parts and parts[0].split("/")[-1] == "gpu" and is_decimal(parts[-1]):
            total += int(parts[-1])
    return total


@functools.lru_cache(maxsize=256)  # a queue repeats a few limits thousands of times
def _slurm_seconds(text: str) -> int | None:
    """squeue's %L ("10:00", "1-00:00:00"); None for UNLIMITED, NOT_SET and the like."""
    try:
        return parse_duration(text) if text[:1].isdigit() else None
    except ValueError:
        return None


def _integer(text: str) -> int | None:
    """squeue's %y or PBS's Priority, signed; None when absent."""
    try:
        return int(text)
    except ValueError:
        return None


def _slurm_memory(text: str, nodes: str) -> float | None:
    """squeue's %m per node ("500M", "4G"; "0" when none was asked) over all nodes, in MB."""
    try:
        megabytes = memory_megabytes(text)
    except ValueError:
        return None
    return megabytes * (int(nodes) if is_decimal(nodes) else 1) or None
