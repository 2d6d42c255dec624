"""How long a job like this one will wait in the queue: Slurm's own estimate for a job that
could start at once (``sbatch --test-only``), else, and as the upper bound, the waits the
ledger saw in the last 30 days for the same partition and a similar size (median and 80th
percentile). :mod:`hpcbridge.policy.feasibility` adds them to run times for a verdict.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hpcbridge.errors import SchedulerError, SchedulerUnavailable

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.ledger.store import Ledger

WAIT_WINDOW = timedelta(days=30)
_ENOUGH_WAITS = 5
# sbatch --test-only: "sbatch: Job 4100 to start at 2026-12-03T15:51:35 using 1 processors ..."
_TEST_ONLY = re.compile(r"to start at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")


Wait = tuple[str | None, int | None, int]  # partition, cores, seconds waited


def recent_waits(ledger: Ledger, cluster: str, now: datetime) -> list[Wait]:
    """The queue waits of jobs that started in the last 30 days (one read for any number of
    stages): from eligible (else submitted) to start."""
    from sqlalchemy import func, select

    from hpcbridge.ledger.schema import Cluster as ClusterRow
    from hpcbridge.ledger.schema import JobAttempt

    ready = func.coalesce(JobAttempt.eligible_at, JobAttempt.submit_at)
    query = (
        select(ready, JobAttempt.start_at, JobAttempt.partition, JobAttempt.alloc_cpus)
        .join(ClusterRow, ClusterRow.id == JobAttempt.cluster_id)
        .where(
            ClusterRow.name == cluster,
            JobAttempt.start_at.is_not(None),
            JobAttempt.start_at >= now - WAIT_WINDOW,
            JobAttempt.start_at <= now,
            ready.is_not(None),
        )
        .order_by(JobAttempt.start_at.desc())
        .limit(5000)
    )
    with ledger.transaction(read_only=True) as connection:
        return [
            (partition, cpus, max(0, int((start - ready_at).total_seconds())))
            for ready_at, start, partition, cpus in connection.execute(query)
            if ready_at is not None and start is not None
        ]


def ledger_wait(waits: Sequence[Wait], partition: str | None, cores: int) -> tuple[int, int, str]:
    """(median, 80th percentile, basis) of the recent waits of jobs most like this one: the
    same partition and a similar size, else the same partition, else any."""
    choices: list[tuple[str, Callable[[str | None, int | None], bool]]] = [
        (
            f"partition {partition}, {cores // 2 or 1}-{cores * 2} cores",
            lambda other, cpus: other == partition and cores // 2 <= (cpus or 1) <= cores * 2,
        ),
        (f"partition {partition}", lambda other, _cpus: other == partition),
        ("any job of the cluster", lambda _partition, _cpus: True),
    ]
    for label, matches in choices:
        seconds = sorted(waited for other, cpus, waited in waits if matches(other, cpus))
        if len(seconds) >= _ENOUGH_WAITS:
            high = seconds[min(len(seconds) - 1, math.ceil(0.8 * len(seconds)) - 1)]
            basis = f"median of {len(seconds)} waits in the last 30 days ({label})"
            return round(statistics.median(seconds)), high, basis
    return 0, 0, "no recent waits in the ledger: none assumed"


def cores(spec: JobSpec) -> int:
    return spec.resources.nodes * spec.resources.ntasks * spec.resources.cpus_per_task


def slurm_estimate(
    cluster: Cluster, probe: list[str], now: datetime, fallback: tuple[int, str]
) -> tuple[int, str, str | None]:
    """(wait, basis, refusal) from ``sbatch --test-only``: Slurm's own estimate of when a job
    like this would start; a refusal (no node can ever run it) makes the deadline infeasible."""
    from hpcbridge.backends.slurm import SlurmBackend

    backend = cluster.backend
    if not isinstance(backend, SlurmBackend):
        return *fallback, None
    try:
        result = backend.commands.run(probe, env={"TZ": "UTC"})
    except SchedulerUnavailable:
        raise
    except SchedulerError as exc:
        return *fallback, str(exc)
    found = _TEST_ONLY.search(result.stderr + result.stdout)
    if not found:
        return *fallback, None  # an answer this does not know: the ledger's estimate stands
    start = datetime.fromisoformat(found.group(1)).replace(tzinfo=UTC)
    wait = max(0, int((start - now).total_seconds()))
    return wait, "Slurm's estimate (sbatch --test-only)", None


def test_only(spec: JobSpec) -> list[str]:
    """``sbatch --test-only`` of a job asking for what ``spec`` asks for."""
    resources = spec.resources
    argv = [
        "sbatch",
        "--test-only",
        f"--nodes={resources.nodes}",
        f"--ntasks={resources.ntasks}",
        f"--cpus-per-task={resources.cpus_per_task}",
    ]
    if resources.walltime:
        argv.append(f"--time={math.ceil(resources.walltime / 60)}")
    if resources.gpus:
        kind = f"{resources.gpu_type}:" if resources.gpu_type else ""
        argv.append(f"--gres=gpu:{kind}{resources.gpus}")
    if resources.memory:
        argv.append(f"--mem={resources.memory}M")
    for flag, value in (
        ("partition", spec.partition),
        ("account", spec.account),
        ("qos", spec.qos),
    ):
        if value:
            argv.append(f"--{flag}={value}")
    return [*argv, "--wrap=true"]
