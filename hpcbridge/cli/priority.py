"""``hpcbridge priority levels|set|rerank``: the site's priority levels, and moving queued
jobs between them with the scheduler's own knobs (Slurm QOS and nice, PBS ``qalter -p``),
by hand or by a campaign's results."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

import click

from hpcbridge.cli.options import (
    JOBS_OR_WORKFLOW_SITE_OPTION,
    JSON_OPTION,
    SITE_OPTION,
    Seconds,
    UtcDate,
    echo_json,
    ledger_option,
    reports_errors,
)
from hpcbridge.cli.workflow import LEDGER_OPTION, STATE_DIR_OPTION
from hpcbridge.jobs.units import format_signed_duration, format_utc_minute

if TYPE_CHECKING:
    from hpcbridge.policy.deadlines import Escalation
    from hpcbridge.policy.rerank import RerankResult


@click.group()
def priority() -> None:
    """Priority levels of a site, and setting them on queued jobs."""


@priority.command("levels")
@SITE_OPTION
@JSON_OPTION
@reports_errors
def priority_levels(site: str, as_json: bool) -> None:
    """The site's levels, lowest first, with the QOS and nice each stands for."""
    from hpcbridge.site import SiteConfig

    options = SiteConfig.load(site).priorities
    rows = [
        {"level": name, "qos": level.qos, "nice": level.nice, "default": name == options.default}
        for name, level in options.levels.items()
    ]
    if as_json:
        echo_json({"levels": rows, "accounts": options.accounts})
        return
    if not rows:
        click.echo(f"site {site} defines no priority levels")
    for row in rows:
        knobs = [f"{key}={row[key]}" for key in ("qos", "nice") if row[key] is not None]
        default = "  (default)" if row["default"] else ""
        click.echo(f"{row['level']}\t{' '.join(knobs) or 'no change'}{default}")
    for account, level in options.accounts.items():
        click.echo(f"account {account}: {level}")


@priority.command("set")
@click.argument("level")
@click.argument("job_ids", nargs=-1)
@click.option("--workflow", "workflow_id", help="Every queued job of this workflow.")
@click.option("--stages", help="With --workflow: only these stages (comma-separated).")
@JOBS_OR_WORKFLOW_SITE_OPTION
@STATE_DIR_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def priority_set(
    level: str,
    job_ids: tuple[str, ...],
    *,
    workflow_id: str | None,
    stages: str | None,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Move JOB_IDS, or a workflow's queued jobs, to LEVEL (scontrol update / qalter -p)."""
    if bool(job_ids) == bool(workflow_id):
        raise click.UsageError("give JOB_IDS or --workflow ID, not both and not neither")
    if stages and not workflow_id:
        raise click.UsageError("--stages goes with --workflow")
    if workflow_id:
        changed = _set_on_workflow(
            level, workflow_id, stages=stages, site=site, state_dir=state_dir, ledger_url=ledger_url
        )
    else:
        from hpcbridge.cluster import Cluster

        with Cluster.from_site(site or os.environ.get("HPCBRIDGE_SITE", "local")) as cluster:
            cluster.set_priority(job_ids, level)
        changed = list(job_ids)
    if as_json:
        echo_json({"level": level, "jobs": changed})
    elif changed:
        click.echo(f"{len(changed)} jobs now at {level}: {' '.join(changed)}")
    else:
        click.echo(f"no queued jobs in workflow {workflow_id}; nothing changed")


def _set_on_workflow(
    level: str,
    workflow_id: str,
    *,
    stages: str | None,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
) -> list[str]:
    """The latest job of each chosen stage that is still pending: running ones keep theirs."""
    from hpcbridge.cli.workflow import open_recorded, workflow_store
    from hpcbridge.jobs.state import JobState

    with workflow_store(state_dir, ledger_url) as store:
        record = store.load(workflow_id)
    names = [stage.name for stage in record.workflow.stages]
    chosen = names if stages is None else [name.strip() for name in stages.split(",")]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} not in workflow {workflow_id} ({', '.join(names)})",
            param_hint="--stages",
        )
    latest = [job for job in map(record.latest_job, chosen) if job is not None]
    with open_recorded(record, site) as cluster:
        infos = cluster.status(latest) if latest else {}
        queued = [job for job in latest if infos[job].state is JobState.PENDING]
        if queued:
            cluster.set_priority(queued, level)
        else:
            cluster.site.priorities.level(level, cluster.site.name)  # still check the level
    return queued


@priority.command("rerank")
@click.argument("campaign")
@click.option("--metric", required=True, help="Score each scenario by the last value of this key.")
@click.option("--minimize", is_flag=True, help="Lower is better (a loss, an error).")
@click.option(
    "--top", type=click.IntRange(min=0), default=1, show_default=True, help="Scenarios raised."
)
@click.option(
    "--bottom", type=click.IntRange(min=0), default=1, show_default=True, help="Scenarios lowered."
)
@click.option("--watch", is_flag=True, help="Keep running: rerank whenever a metric file changes.")
@click.option(
    "--interval",
    type=Seconds(least=0.1, most=86_400),
    default=1.0,
    show_default=True,
    help="With --watch: seconds between looks at the metric files.",
)
@JOBS_OR_WORKFLOW_SITE_OPTION
@STATE_DIR_OPTION
@ledger_option(
    "Read workflow records from, and record priority changes in, this ledger",
    "state files, with changes in the private ledger",
)
@JSON_OPTION
@reports_errors
def priority_rerank(
    campaign: str,
    *,
    metric: str,
    minimize: bool,
    top: int,
    bottom: int,
    watch: bool,
    interval: float,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Rank CAMPAIGN's scenarios by their metric files; move the queued jobs of the best to
    the highest level, of the weakest to the lowest, of the rest to the default."""
    from hpcbridge.cli.workflow import open_recorded
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.workflows.campaign import campaign_records, watch_campaign
    from hpcbridge.workflows.store import LedgerStore, StateFileStore, WorkflowStore

    with Ledger.open(ledger_url) as ledger:
        store: WorkflowStore = LedgerStore(ledger) if ledger_url else StateFileStore(state_dir)
        records = campaign_records(store, campaign)
        with open_recorded(records[0], site) as cluster:
            passes = watch_campaign(
                cluster,
                store,
                ledger,
                campaign,
                interval=interval,
                metric=metric,
                minimize=minimize,
                top=top,
                bottom=bottom,
            )
            try:
                for result in passes:
                    _print_rerank(result, as_json=as_json)
                    if not watch:
                        break
            except KeyboardInterrupt:
                pass


def _print_rerank(result: RerankResult, *, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "campaign": result.campaign,
                "scenarios": [asdict(placement) for placement in result.placements],
                "changes": [asdict(change) for change in result.changes],
                "unchanged": result.unchanged,
            }
        )
        return
    for placement in result.placements:
        click.echo(f"{placement.scenario}\t{placement.level or 'unchanged'}\t{placement.reason}")
    for change in result.changes:
        click.echo(
            f"job {change.job_id} ({change.scenario}): {change.old_level} -> {change.new_level}"
        )
    click.echo(f"{len(result.changes)} queued jobs moved, {len(result.unchanged)} already in place")


@priority.command("deadline")
@click.argument("account")
@click.argument("due", type=UtcDate(), required=False)
@click.option("--clear", is_flag=True, help="Remove the account's deadline set here.")
@SITE_OPTION
@ledger_option("Keep the deadline in this ledger", "the private ledger")
@JSON_OPTION
@reports_errors
def priority_deadline(
    account: str,
    due: datetime | None,
    *,
    clear: bool,
    site: str,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Set ACCOUNT's deadline to DUE (UTC), or --clear it, and move its queued jobs now."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.deadlines import move_deadline

    if (due is None) == (not clear):
        raise click.UsageError("give DUE or --clear, not both and not neither")
    started = time.perf_counter()
    with Ledger.open(ledger_url) as ledger, Cluster.from_site(site) as cluster:
        escalation = move_deadline(cluster, ledger, account, due)
    _print_escalation(escalation, as_json=as_json, seconds=time.perf_counter() - started)


@priority.command("deadlines")
@click.option("--apply", is_flag=True, help="Move queued jobs to the levels shown.")
@click.option(
    "--watch",
    type=Seconds(least=1, most=86_400),
    help="Apply now and again every this many seconds, until interrupted.",
)
@SITE_OPTION
@ledger_option("Read deadlines from, and record changes in, this ledger", "the private ledger")
@JSON_OPTION
@reports_errors
def priority_deadlines(
    *, apply: bool, watch: float | None, site: str, ledger_url: str | None, as_json: bool
) -> None:
    """Every account with a deadline: time left, predicted remaining work, slack, and the
    level its queued jobs get (applied with --apply or --watch; cron-safe)."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.deadlines import escalate

    with Ledger.open(ledger_url) as ledger, Cluster.from_site(site) as cluster:
        try:
            while True:
                started = time.perf_counter()
                applied = apply or watch is not None
                escalation = escalate(cluster, ledger, apply=applied)
                seconds = time.perf_counter() - started
                _print_escalation(escalation, as_json=as_json, seconds=seconds, applied=applied)
                if watch is None:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            pass


def _print_escalation(
    escalation: Escalation, *, as_json: bool, seconds: float, applied: bool = True
) -> None:
    if as_json:
        echo_json(
            {
                "applied": applied,
                "accounts": [
                    {**asdict(slack), "due": slack.due and slack.due.isoformat()}
                    for slack in escalation.slacks
                ],
                "changes": [asdict(change) for change in escalation.changes],
                "unchanged": escalation.unchanged,
                "seconds": round(seconds, 3),
            },
        )
        return
    for slack in escalation.slacks:
        if slack.due is None:
            click.echo(f"{slack.account}: no deadline")
            continue
        line = (
            f"{slack.account}: due {format_utc_minute(slack.due)}, "
            f"time left {format_signed_duration(slack.time_left_s)}, "
            f"remaining work {format_signed_duration(slack.remaining_s)} ({slack.running} running, "
            f"{slack.queued} queued), slack {format_signed_duration(slack.slack_s)}: "
            f"{slack.level or 'no raise'}"
        )
        click.echo(line)
        if slack.unpredicted:
            click.echo(
                f"  not counted (no time limit and no finished runs to predict from): "
                f"{' '.join(slack.unpredicted)}"
            )
    for change in escalation.changes:
        click.echo(
            f"job {change.job_id}: {change.old_level} -> {change.new_level} ({change.reason})"
        )
    moved = "moved" if applied else "would move (--apply moves them)"
    click.echo(
        f"{len(escalation.changes)} queued jobs {moved}, {len(escalation.unchanged)} already in "
        f"place ({seconds:.2f} s)"
    )
