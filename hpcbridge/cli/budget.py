"""``hpcbridge budget show|release|sync|allocate``: budgets per account, the jobs waiting for
them, and their limits written into Slurm (hpcbridge.policy)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from hpcbridge.cli.options import (
    JSON_OPTION,
    LEDGER_OPTION,
    SITE_OPTION,
    UtcDate,
    echo_json,
    reports_errors,
)

if TYPE_CHECKING:
    from hpcbridge.policy.budget import Budget
    from hpcbridge.policy.report import AccountStanding


@click.group()
def budget() -> None:
    """Budgets: what each account has left, jobs waiting for budget, Slurm's limits."""


@budget.command("show")
@click.option("--account", help="Only this account.  [default: every account with a budget]")
@SITE_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def budget_show(account: str | None, site: str, ledger_url: str | None, as_json: bool) -> None:
    """Allocation, used (ledger), committed (queue), left and forecast exhaustion."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.report import budget_standings

    with Cluster.from_site(site) as cluster, Ledger.open(ledger_url, upgrade=False) as opened:
        standings = budget_standings(cluster, opened, account=account)
        name = cluster.site.name
    if as_json:
        echo_json({"site": name, "accounts": [_standing_json(s) for s in standings]})
        return
    if not standings:
        click.echo(f"site {name} has no budgets")
    for standing in standings:
        _print_standing(standing)


@budget.command("release")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another release's lock before giving up.",
)
@SITE_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def budget_release(wait_s: float, site: str, ledger_url: str | None, as_json: bool) -> None:
    """Release jobs held for budget that now fit (cron-safe: locked, repeatable)."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.release import release_waiting

    with Cluster.from_site(site) as cluster, Ledger.open(ledger_url, upgrade=False) as opened:
        done = release_waiting(cluster, opened, wait=wait_s)
    if as_json:
        echo_json(
            {
                "released": list(done.released),
                "waiting": list(done.waiting),
                "dropped": list(done.dropped),
                "busy": done.busy,
            }
        )
        return
    if done.busy:
        click.echo("another budget release is running; nothing done", err=True)
        return
    for job_id in done.released:
        click.echo(f"released {job_id}")
    if done.waiting:
        click.echo(f"{len(done.waiting)} jobs still wait for budget: {' '.join(done.waiting)}")


@budget.command("sync")
@SITE_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def budget_sync(site: str, ledger_url: str | None, as_json: bool) -> None:
    """Write the budgets into Slurm: sacctmgr ... set GrpTRESMins=cpu=N,gres/gpu=M."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.slurm_limits import sync_limits

    with Cluster.from_site(site) as cluster, Ledger.open(ledger_url, upgrade=False) as opened:
        written = sync_limits(cluster, opened)
    if as_json:
        echo_json(
            [
                {"account": w.account, "user": w.user, "grp_tres_mins": w.tres_minutes}
                for w in written
            ]
        )
        return
    for limit in written:
        who = f"user {limit.user} in {limit.account}" if limit.user else limit.account
        click.echo(f"{who}: GrpTRESMins={limit.tres_minutes}")


@budget.command("allocate")
@click.argument("account")
@click.option("--core-hours", type=click.FloatRange(min=0), required=True)
@click.option("--gpu-hours", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--from", "starts", type=UtcDate(), required=True, help="Start of the period.")
@click.option("--to", "ends", type=UtcDate(), required=True, help="End of the period.")
@LEDGER_OPTION
@reports_errors
def budget_allocate(
    account: str,
    *,
    core_hours: float,
    gpu_hours: float,
    starts: datetime,
    ends: datetime,
    ledger_url: str | None,
) -> None:
    """Record (or raise) ACCOUNT's allocation for the period [--from, --to)."""
    from hpcbridge.ledger.store import Ledger

    if ends <= starts:
        raise click.BadParameter(f"{ends:%Y-%m-%d} is not after --from", param_hint="--to")
    with Ledger.open(ledger_url) as opened:
        opened.set_allocation(account, starts, ends, core_hours, gpu_hours)
    click.echo(
        f"{account}: {core_hours:,g} core-hours, {gpu_hours:,g} GPU-hours "
        f"from {starts:%Y-%m-%d} to {ends:%Y-%m-%d}"
    )


def _standing_json(standing: AccountStanding) -> dict[str, Any]:
    return {
        "budgets": [_budget_json(b) for b in standing.budgets],
        "waiting_for_budget": list(standing.waiting),
        "held_by_slurm": [{"job_id": j, "why": w} for j, w in standing.held_by_slurm],
        "exhaustion": standing.exhaustion.isoformat() if standing.exhaustion else None,
        "exhaustion_note": standing.exhaustion_note,
    }


def _budget_json(budget: Budget) -> dict[str, Any]:
    limit = budget.limit
    return {
        "account": budget.account,
        "user": budget.user,
        "starts": budget.starts.isoformat(),
        "ends": budget.ends.isoformat() if budget.ends else None,
        "limit_core_hours": limit.core_hours if limit and budget.limits_cores else None,
        "limit_gpu_hours": limit.gpu_hours if limit and budget.limits_gpu else None,
        "used_core_hours": budget.used.core_hours,
        "used_gpu_hours": budget.used.gpu_hours,
        "committed_core_hours": budget.committed.cost.core_hours,
        "committed_gpu_hours": budget.committed.cost.gpu_hours,
        "committed_jobs": budget.committed.queued + budget.committed.running,
        "unbounded_jobs": budget.committed.unbounded,
        "left_core_hours": budget.left.core_hours if budget.limits_cores else None,
        "left_gpu_hours": budget.left.gpu_hours if budget.limits_gpu else None,
    }


def _print_standing(standing: AccountStanding) -> None:
    for budget in standing.budgets:
        row = _budget_json(budget)
        period = (
            f"{budget.starts:%Y-%m-%d} to {budget.ends:%Y-%m-%d}"
            if budget.ends
            else ("no allocation covers now" if budget.limit is None else "the last 30 days")
        )
        click.echo(f"{budget.scope} ({period})")
        for unit, key in (("core-hours", "core_hours"), ("GPU-hours", "gpu_hours")):
            if row[f"left_{key}"] is None:
                continue
            click.echo(
                f"  {unit}: allocation {row[f'limit_{key}']:,.1f}, used {row[f'used_{key}']:,.1f},"
                f" committed {row[f'committed_{key}']:,.1f} by {budget.committed.words()},"
                f" left {row[f'left_{key}']:,.1f}"
            )
    if standing.exhaustion is not None:
        click.echo(f"  forecast exhaustion: {standing.exhaustion:%Y-%m-%d}")
    elif standing.exhaustion_note:
        click.echo(f"  forecast exhaustion: none ({standing.exhaustion_note})")
    for job_id in standing.waiting:
        click.echo(f"  job {job_id}: held, waiting for budget (hpcbridge budget release)")
    for job_id, why in standing.held_by_slurm:
        click.echo(f"  job {job_id}: pending in Slurm: {why}")
