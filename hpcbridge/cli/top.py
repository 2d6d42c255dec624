"""``hpcbridge top``: running jobs' CPU and memory use against what they asked for, flagging
those using under a quarter of either."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from hpcbridge.cli.options import JSON_OPTION, SITE_OPTION, Seconds, echo_json, reports_errors
from hpcbridge.jobs.units import format_duration

if TYPE_CHECKING:
    from hpcbridge.policy.live import LiveUse


@click.command()
@click.option("--account", help="Only this account's jobs.")
@click.option(
    "--watch",
    type=Seconds(least=1, most=86_400),
    help="Refresh every this many seconds, until interrupted.",
)
@SITE_OPTION
@JSON_OPTION
@reports_errors
def top(*, account: str | None, watch: float | None, site: str, as_json: bool) -> None:
    """Running jobs: cores, run time, CPU use (CPU time over cores x run time), peak memory
    against memory asked; LOW marks use under 25% (sstat on Slurm, qstat on PBS)."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.policy.live import live_use

    with Cluster.from_site(site) as cluster:
        try:
            while True:
                _show(live_use(cluster, account), as_json=as_json)
                if watch is None:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            pass


def _show(uses: list[LiveUse], *, as_json: bool) -> None:
    if as_json:
        echo_json({"jobs": [asdict(use) for use in uses]})
        return
    if not uses:
        click.echo("no running jobs")
    for use in uses:
        job = use.job
        cpu = "-" if use.cpu_pct is None else f"{use.cpu_pct:.0f}%"
        used = "-" if job.mem_used_mb is None else f"{job.mem_used_mb:.0f}M"
        asked = "-" if job.mem_mb is None else f"{job.mem_mb:.0f}M"
        flag = f"  LOW: {', '.join(use.low)}" if use.low else ""
        click.echo(
            f"{job.job_id}\t{job.user or '-'}\t{job.account or '-'}\t{job.cores} cores\t"
            f"{format_duration(job.used_s)}\tCPU {cpu}\tmemory {used} of {asked}{flag}"
        )
