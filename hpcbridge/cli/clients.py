"""``hpcbridge clients show|sync``: each client's guaranteed share of the cluster's cores, what
the scheduler has for it, and what its running jobs hold now (hpcbridge.policy.clients)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hpcbridge.cli.options import JSON_OPTION, SITE_OPTION, echo_json, reports_errors

if TYPE_CHECKING:
    from hpcbridge.policy.clients import Change, Configured, Standing


@click.group()
def clients() -> None:
    """Client shares: guaranteed shares of the cores as Slurm fairshare and caps."""


@clients.command("show")
@SITE_OPTION
@JSON_OPTION
@reports_errors
def clients_show(site: str, as_json: bool) -> None:
    """Each client's share and max, what the scheduler has now, and live use."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.policy.clients import client_standings

    with Cluster.from_site(site) as cluster:
        report = client_standings(cluster)
    if as_json:
        echo_json(
            {
                "site": report.site,
                "scheduler": report.scheduler,
                "total_cores": report.total_cores,
                "busy_cores": report.busy_cores,
                "clients": [_standing_json(s, report.total_cores) for s in report.standings],
                "note": report.note,
            }
        )
        return
    click.echo(
        f"site {report.site} ({report.scheduler}): {report.total_cores} cores, "
        f"{report.busy_cores} held by running jobs"
    )
    if not report.standings:
        click.echo(f"site {report.site} has no clients")
    for standing in report.standings:
        _print_standing(standing, report.total_cores, report.scheduler)
    if report.note:
        click.echo(f"note: {report.note}")


@clients.command("sync")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@SITE_OPTION
@JSON_OPTION
@reports_errors
def clients_sync(dry_run: bool, site: str, as_json: bool) -> None:
    """Write the shares into Slurm: sacctmgr ... set fairshare=N GrpTRES=cpu=M."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.policy.clients import sync_shares

    with Cluster.from_site(site) as cluster:
        result = sync_shares(cluster, dry_run=dry_run)
    if as_json:
        echo_json(
            {
                "site": result.site,
                "total_cores": result.total_cores,
                "dry_run": result.dry_run,
                "changes": [_change_json(change) for change in result.changes],
                "in_place": list(result.in_place),
                "note": result.note,
            }
        )
        return
    verb = "would set" if dry_run else "set"
    for change in result.changes:
        click.echo(
            f"{change.target.account}: {verb} {' '.join(change.settings)} "
            f"(was {change.before.words()})"
        )
    for account in result.in_place:
        click.echo(f"{account}: in place")
    if not result.changes:
        click.echo(
            f"site {result.site} has no clients"
            if not result.in_place
            else "nothing to change: every client's fairshare and cap are in place"
        )
    if result.note:
        click.echo(f"note: {result.note}")


def _print_standing(standing: Standing, total: int, scheduler: str) -> None:
    limit = "no max" if standing.max is None else f"max {standing.max:g}% ({standing.cap} cores)"
    click.echo(
        f"{standing.account}: share {standing.share:g}% ({standing.share_cores:g} of {total} "
        f"cores), {limit}"
    )
    if standing.configured is not None:
        place = "in place" if standing.in_place else "differs: hpcbridge clients sync"
        click.echo(f"  Slurm now: {standing.configured.words()} ({place})")
    elif scheduler == "slurm":
        click.echo(f"  Slurm now: no such account (sacctmgr add account {standing.account})")
    borrowing = standing.borrowed_cores
    click.echo(
        f"  running: {standing.running_cores} cores "
        f"({100 * standing.running_cores / total:.1f}% of the cluster)"
        + (f", borrowing {borrowing:g} above its share" if borrowing else "")
    )


def _standing_json(standing: Standing, total: int) -> dict[str, Any]:
    return {
        "account": standing.account,
        "share_percent": standing.share,
        "share_cores": standing.share_cores,
        "max_percent": standing.max,
        "max_cores": standing.cap,
        "configured": _configured_json(standing.configured),
        "in_place": standing.in_place,
        "running_cores": standing.running_cores,
        "running_percent": 100 * standing.running_cores / total,
        "borrowed_cores": standing.borrowed_cores,
    }


def _configured_json(configured: Configured | None) -> dict[str, Any] | None:
    if configured is None:
        return None
    return {
        "fairshare": configured.fairshare,
        "cpu_cap": configured.cpu_cap,
        "uniform": configured.uniform,
    }


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "account": change.target.account,
        "fairshare": change.target.fairshare,
        "cpu_cap": change.target.cpu_cap,
        "before": _configured_json(change.before),
        "settings": list(change.settings),
        "argv": list(change.argv),
    }
