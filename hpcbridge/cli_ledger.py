"""``hpcbridge ledger ...`` and ``hpcbridge report ...``: the accounting ledger's commands.

SQLAlchemy and Alembic load inside each command, never at start-up. Every command takes
``--ledger URL`` (default ``$HPCBRIDGE_LEDGER``, else a private SQLite file under the user's
XDG data folder).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from hpcbridge.cli_support import (
    EXIT_PARTIAL,
    JSON_OPTION,
    SITE_OPTION,
    echo_json,
    exit_code_for,
    reports_errors,
)

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

    from hpcbridge.ledger.sources import Window
    from hpcbridge.ledger.swf import SwfTrace
    from hpcbridge.ledger.sync import Progress

LEDGER_OPTION = click.option(
    "--ledger",
    "ledger_url",
    default=lambda: os.environ.get("HPCBRIDGE_LEDGER"),
    show_default="$HPCBRIDGE_LEDGER or ~/.local/share/hpcbridge/ledger.sqlite",
    help="Ledger database URL: sqlite:///PATH or postgresql://USER@HOST/DB.",
)


@click.group()
def ledger() -> None:
    """Keep the accounting ledger: create, upgrade, sync from the scheduler, import traces."""


@click.group()
def report() -> None:
    """Reports from the accounting ledger."""


@ledger.command("upgrade")
@LEDGER_OPTION
@reports_errors
def ledger_upgrade(ledger_url: str | None) -> None:
    """Create the ledger, or bring its schema to this hpcbridge's version."""
    from hpcbridge.ledger.migrations import head_revision
    from hpcbridge.ledger.store import Ledger

    with Ledger.open(ledger_url) as opened:
        where = opened.engine.url.render_as_string(hide_password=True)
    click.echo(f"ledger {where} is at schema version {head_revision()}")


# -- traces and usage reports ---------------------------------------------------------------

_REPORT_FORMATS = ("table", "csv", "json", "markdown")
_DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m"])
_SHOWN_BAD_LINES = 20


@ledger.command("import-swf")
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--cluster",
    help="Cluster name to file the jobs under.  [default: the file name less .swf/.gz]",
)
@click.option(
    "--max-bad-lines",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Malformed job lines to skip (and list) before deciding the file is not SWF.",
)
@LEDGER_OPTION
@reports_errors
def ledger_import_swf(
    trace_file: str, cluster: str | None, max_bad_lines: int, ledger_url: str | None
) -> None:
    """Import TRACE_FILE, a Standard Workload Format trace (plain or gzip), into the ledger.

    Importing the same trace again rewrites the same rows, so an interrupted import can be
    repeated. Malformed lines are skipped and listed with their line number and field.
    """
    import time

    from hpcbridge.ledger.store import Ledger
    from hpcbridge.ledger.swf import SwfTrace, import_swf

    trace = SwfTrace(trace_file, max_bad_lines=max_bad_lines)
    started = time.perf_counter()
    with Ledger.open(ledger_url) as opened, _trace_progress(trace) as progress:
        written = import_swf(opened, trace, cluster=cluster, progress=progress)
        where = opened.engine.url.render_as_string(hide_password=True)
    click.echo(
        f"imported {written:,} jobs from {trace_file} as cluster {cluster or trace.cluster_name!r} "
        f"into {where} in {time.perf_counter() - started:.1f} s"
    )
    if trace.bad_lines:
        click.echo(f"warning: {len(trace.bad_lines)} malformed lines not imported:", err=True)
        for bad in trace.bad_lines[:_SHOWN_BAD_LINES]:
            click.echo(f"  {bad}", err=True)
        if len(trace.bad_lines) > _SHOWN_BAD_LINES:
            click.echo(f"  ... and {len(trace.bad_lines) - _SHOWN_BAD_LINES} more", err=True)


@contextlib.contextmanager
def _terminal_progress(quiet: bool = False) -> Iterator[RichProgress | None]:
    """A Rich progress display on an interactive stderr; None under cron or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        yield bar


@contextlib.contextmanager
def _trace_progress(trace: SwfTrace) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the file's bytes on an interactive terminal; nothing otherwise."""
    with _terminal_progress() as bar:
        if bar is None:
            yield None
            return
        task = bar.add_task(f"importing {trace.path.name}", total=trace.total_bytes)
        yield lambda _rows: bar.update(task, completed=trace.bytes_read)


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
    from hpcbridge.ledger import report_render
    from hpcbridge.ledger.reports import parse_group_by, usage_report
    from hpcbridge.ledger.store import Ledger

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
        Console(soft_wrap=True, width=width).print(report_render.table(result))
    else:
        click.echo(report_render.render(result, output_format), nl=False)


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
    from hpcbridge.ledger import grant_render
    from hpcbridge.ledger.grant import check_account, grant_report
    from hpcbridge.ledger.store import Ledger

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


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """--from and --to as UTC: --to defaults to now, --from to the start of --to's month."""
    end = end.replace(tzinfo=UTC) if end else datetime.now(UTC)
    start = start.replace(tzinfo=UTC) if start else _month_start(end)
    if end <= start:
        raise click.BadParameter(
            f"--to {end:%Y-%m-%d %H:%M:%S} is not after --from", param_hint="'--to'"
        )
    return start, end


def _month_start(end: datetime) -> datetime:
    """The start of the month holding the last moment before ``end``."""
    last = end - timedelta(microseconds=1)
    return last.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@ledger.command("sync")
@SITE_OPTION
@LEDGER_OPTION
@click.option(
    "--lock-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for another sync of the same cluster to finish.",
)
@click.option("--quiet", is_flag=True, help="No progress bar (implied when not on a terminal).")
@JSON_OPTION
@reports_errors
def ledger_sync(
    site: str, ledger_url: str | None, lock_timeout: float, quiet: bool, as_json: bool
) -> None:
    """Read the site's new accounting into the ledger; safe to run from cron.

    Exit status 0 when every source was read, 7 (partial) when some windows or sources
    failed and will be retried next time, or the failing error's own code when nothing
    could be read.
    """
    from hpcbridge.cluster import make_transport
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.ledger.sync import SyncStatus, sources_for, sync
    from hpcbridge.site import SiteConfig

    config = SiteConfig.load(site)
    name = config.cluster_name or config.name
    with contextlib.closing(make_transport(config)) as transport, Ledger.open(ledger_url) as opened:
        sources = sources_for(config, transport)
        with _sync_progress(quiet or as_json) as progress:
            result = sync(
                opened,
                name,
                config.scheduler,
                sources,
                progress=progress,
                lock_timeout=lock_timeout,
            )
    if as_json:
        echo_json(
            {
                "cluster": result.cluster,
                "status": result.status.value,
                "rows": result.rows,
                "seconds": round(result.seconds, 3),
                "sources": [
                    {
                        "source": outcome.source,
                        "windows": outcome.windows,
                        "windows_read": outcome.windows_read,
                        "rows": outcome.rows,
                        "error": None if outcome.error is None else str(outcome.error),
                    }
                    for outcome in result.outcomes
                ],
            }
        )
    else:
        for outcome in result.outcomes:
            click.echo(
                f"{result.cluster} {outcome.source}: {outcome.windows_read}/{outcome.windows} "
                f"windows, {outcome.rows} attempts written"
            )
    for outcome in result.outcomes:
        if outcome.error is not None:
            click.echo(f"error: {outcome.source}: {outcome.error}", err=True)
    if result.status is SyncStatus.PARTIAL:
        sys.exit(EXIT_PARTIAL)
    if result.status is SyncStatus.FAILED:
        first = next(o.error for o in result.outcomes if o.error is not None)
        sys.exit(exit_code_for(first))


@contextlib.contextmanager
def _sync_progress(quiet: bool) -> Iterator[Progress | None]:
    """A bar of windows read per source on an interactive stderr; nothing otherwise."""
    from hpcbridge.ledger.sync import Progress as SyncProgress

    with _terminal_progress(quiet) as display:
        if display is None:
            yield None
            return
        bar: RichProgress = display  # the methods below see the narrowed type

        class _Bar(SyncProgress):
            def windows_planned(self, source: str, count: int) -> None:
                self.task = bar.add_task(f"{source} windows", total=count)

            def window_done(self, source: str, window: Window, rows: int) -> None:
                bar.advance(self.task)

        yield _Bar()
