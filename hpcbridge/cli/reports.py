"""``hpcbridge report ...``: documents made from the accounting ledger (usage, grant).

SQLAlchemy and the renderers load inside each command, never at start-up.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from hpcbridge.cli.options import LEDGER_OPTION, SITE_OPTION, UtcDate, reports_errors


@click.group()
def report() -> None:
    """Reports from the accounting ledger."""


_REPORT_FORMATS = ("table", "csv", "json", "markdown")
_DATE = UtcDate()


@report.command("usage")
@click.option(
    "--by",
    "group_by",
    default="account",
    show_default=True,
    help="Group by any of account, user, month, partition, state (comma-separated).",
)
@click.option("--from", "start", type=_DATE, help="Start (UTC).  [default: --to's month start]")
@click.option("--to", "end", type=_DATE, help="End, exclusive (UTC).  [default: now]")
@click.option("--account", help="Only this account.")
@click.option("--cluster", help="Only this cluster.")
@click.option("--format", "output_format", type=click.Choice(_REPORT_FORMATS), default="table")
@LEDGER_OPTION
@reports_errors
def report_usage(
    *,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
    account: str | None,
    cluster: str | None,
    output_format: str,
    ledger_url: str | None,
) -> None:
    """Core-hours, GPU-hours, jobs, mean wait, CPU efficiency and allocation use per group.

    Hours crossing a month boundary or the --from/--to bounds are split pro rata (as sreport
    does); running jobs count up to now. Dates are UTC; --to is exclusive.
    """
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.ledger.usage import parse_group_by, usage_report
    from hpcbridge.reports import usage_render

    try:
        by = parse_group_by(group_by)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--by'") from exc
    start, end = _period(start, end)
    with Ledger.open(ledger_url, upgrade=False) as opened:
        result = usage_report(opened, by, start, end, account=account, cluster=cluster)
    if output_format == "table":
        from rich.console import Console

        # Piped into a file or another program, the table keeps its natural width rather
        # than being squeezed into 80 columns.
        width = None if sys.stdout.isatty() else 10_000
        Console(soft_wrap=True, width=width).print(usage_render.table(result))
    else:
        click.echo(usage_render.render(result, output_format), nl=False)


@report.command("grant")
@click.option("--account", required=True, help="The account (grant, project) to report on.")
@click.option("--from", "start", type=_DATE, help="Start (UTC).  [default: --to's month start]")
@click.option("--to", "end", type=_DATE, help="End, exclusive (UTC).  [default: now]")
@click.option("--cluster", help="Only this cluster.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("html", "markdown", "csv", "json")),
    default="html",
    show_default=True,
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Jobs in the top-jobs table.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write here (atomically: the old file stays whole until the new one is complete).  "
    "[default: stdout]",
)
@LEDGER_OPTION
@reports_errors
def report_grant(
    *,
    account: str,
    start: datetime | None,
    end: datetime | None,
    cluster: str | None,
    output_format: str,
    top: int,
    out_path: str | None,
    ledger_url: str | None,
) -> None:
    """A grant report of one account: usage by month and user, allocations, the burn-down
    with its forecast, top jobs. HTML is one self-contained file with charts.

    Safe from cron: no prompts, exit status 0 or the documented error code, and --out is
    replaced only by a complete report. Dates are UTC; --to is exclusive.
    """
    from hpcbridge.files import write_atomically
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.reports import grant_render
    from hpcbridge.reports.grant import check_account, grant_report

    start, end = _period(start, end)
    with Ledger.open(ledger_url, upgrade=False) as opened:
        try:
            check_account(opened, account)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--account'") from exc
        result = grant_report(opened, account, start, end, cluster=cluster, top=top)
    data = grant_render.render(result, output_format).encode()
    if out_path is None:
        click.echo(data, nl=False)  # bytes go to the binary stream as they are
        return
    try:
        write_atomically(out_path, data)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out_path}: {exc}", param_hint="'--out'") from exc


@report.command("sla")
@click.option("--from", "start", type=_DATE, help="Start (UTC).  [default: --to's month start]")
@click.option("--to", "end", type=_DATE, help="End, exclusive (UTC).  [default: now]")
@click.option("--cluster", help="Only this cluster's deadlines and usage.")
@click.option(
    "--clients-of",
    "site",
    metavar="SITE",
    help="Take each client's guaranteed share (and the cluster) from this site's clients.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("markdown", "html", "csv", "json")),
    default="markdown",
    show_default=True,
)
@LEDGER_OPTION
@reports_errors
def report_sla(
    *,
    start: datetime | None,
    end: datetime | None,
    cluster: str | None,
    site: str | None,
    output_format: str,
    ledger_url: str | None,
) -> None:
    """Per client: deadlines due in the period, share met, median lateness of the missed, and
    core-hours used against the guaranteed share. Run `hpcbridge deadlines` first (cron) so
    that deadlines whose work is over are recorded as met or missed."""
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.reports.sla import render, sla_report
    from hpcbridge.site import SiteConfig

    start, end = _period(start, end)
    shares = None
    if site is not None:
        config = SiteConfig.load(site)
        shares = {name: client.share for name, client in config.clients.items()}
        cluster = cluster or config.cluster_name or config.name
    with Ledger.open(ledger_url, upgrade=False) as opened:
        result = sla_report(opened, start, end, cluster=cluster, shares=shares)
    click.echo(render(result, output_format), nl=False)


@report.command("energy")
@click.option("--from", "start", type=_DATE, help="Start (UTC).  [default: --to's month start]")
@click.option("--to", "end", type=_DATE, help="End, exclusive (UTC).  [default: now]")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("markdown", "csv", "json")),
    default="markdown",
    show_default=True,
)
@SITE_OPTION
@LEDGER_OPTION
@reports_errors
def report_energy(
    *,
    start: datetime | None,
    end: datetime | None,
    output_format: str,
    site: str,
    ledger_url: str | None,
) -> None:
    """Per account: core- and GPU-hours run on the site's cluster in the period, and the kWh
    and cost they are estimated to have taken (the site's energy: watts and tariff)."""
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.reports.energy import energy_report, render
    from hpcbridge.site import SiteConfig

    start, end = _period(start, end)
    config = SiteConfig.load(site)
    with Ledger.open(ledger_url, upgrade=False) as opened:
        result = energy_report(
            opened, config.energy, start, end, cluster=config.cluster_name or config.name
        )
    click.echo(render(result, output_format), nl=False)


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """--from and --to as UTC: --to defaults to now, --from to the start of --to's month."""
    end = end or datetime.now(UTC)
    start = start or _month_start(end)
    if end <= start:
        raise click.BadParameter(
            f"--to {end:%Y-%m-%d %H:%M:%S} is not after --from", param_hint="'--to'"
        )
    return start, end


def _month_start(end: datetime) -> datetime:
    """The start of the month holding the last moment before ``end``."""
    last = end - timedelta(microseconds=1)
    return last.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
