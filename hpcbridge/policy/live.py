"""What running jobs use now against what they asked for (``hpcbridge top``): CPU time over
the cores held for the time run, peak memory over the memory asked, and a flag on jobs
using under a quarter of either, which are holding resources others wait for.

One queue read lists the running jobs (policy.queue); on Slurm one ``sstat --allsteps`` then
reads every job's steps (CPU time and peak memory from TRESUsageInTot/Max, summed over
steps, the peak the largest); on PBS the same ``qstat -f`` already carries resources_used.
GPU use is not reported: neither scheduler gives it without a GPU accounting plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hpcbridge.jobs.units import memory_megabytes, parse_duration
from hpcbridge.policy.queue import QueuedJob, account_queue

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster

LOW_PERCENT = 25.0


@dataclass(frozen=True)
class LiveUse:
    """One running job's use so far."""

    job: QueuedJob
    cpu_pct: float | None  # CPU time / (cores x time run)
    mem_pct: float | None  # peak memory / memory asked
    low: list[str]  # "CPU 3%", "memory 12%": under LOW_PERCENT


def live_use(cluster: Cluster, account: str | None = None) -> list[LiveUse]:
    """Every running job (of ``account``) with its use, from one queue read (and on Slurm one
    sstat for all of them)."""
    from hpcbridge.backends.slurm import SlurmBackend

    running = [job for job in account_queue(cluster, account) if job.running]
    backend = cluster.backend
    if isinstance(backend, SlurmBackend) and running:
        argv = [
            "sstat",
            "--allsteps",
            "--noheader",
            "--parsable2",
            f"--jobs={','.join(job.job_id for job in running)}",
            "--format=JobID,TRESUsageInTot,TRESUsageInMax",
        ]
        used = parse_sstat(backend.commands.run(argv, missing_ok=True).stdout)
        running = [
            replace(job, cpu_used_s=used[job.job_id][0], mem_used_mb=used[job.job_id][1])
            if job.job_id in used
            else job
            for job in running
        ]
    return [_use(job) for job in running]


def parse_sstat(stdout: str) -> dict[str, tuple[float, float]]:
    """Job id -> (CPU seconds summed over its steps, the largest step's peak memory in MB)."""
    found: dict[str, tuple[float, float]] = {}
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) != 3:
            continue
        job = fields[0].split(".")[0]
        cpu = _tres(fields[1]).get("cpu")
        peak = _tres(fields[2]).get("mem")
        seconds = parse_duration(cpu.split(".")[0]) if cpu else 0
        megabytes = memory_megabytes(peak) if peak else 0.0
        before = found.get(job, (0.0, 0.0))
        found[job] = (before[0] + seconds, max(before[1], megabytes))
    return found


def _use(job: QueuedJob) -> LiveUse:
    held = job.used_s * max(job.cores, 1)
    cpu = 100 * job.cpu_used_s / held if job.cpu_used_s is not None and held else None
    mem = 100 * job.mem_used_mb / job.mem_mb if job.mem_used_mb is not None and job.mem_mb else None
    low = [
        f"{what} {value:.0f}%"
        for what, value in (("CPU", cpu), ("memory", mem))
        if value is not None and value < LOW_PERCENT
    ]
    return LiveUse(job, cpu, mem, low)


def _tres(text: str) -> dict[str, str]:
    """ "cpu=00:00:11,mem=66152K,..." as a mapping."""
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)
