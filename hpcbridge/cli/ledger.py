"""``hpcbridge ledger ...``: keep the accounting ledger (upgrade, import traces, sync).

SQLAlchemy and Alembic load inside each command, never at start-up. Every command takes
``--ledger URL`` (default ``$HPCBRIDGE_LEDGER``, else a private SQLite file under the user's
XDG data folder).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from hpcbridge.cli.options import (
    EXIT_PARTIAL,
    JSON_OPTION,
    LEDGER_OPTION,
    MAX_BAD_LINES_OPTION,
    SITE_OPTION,
    Seconds,
    echo_json,
    exit_code_for,
    reports_errors,
    terminal_progress,
    warn_bad_lines,
)

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

    from hpcbridge.ledger.sources.base import Window
    from hpcbridge.ledger.sources.swf import SwfTrace
    from hpcbridge.ledger.sync import Progress


@click.group()
def ledger() -> None:
    """Keep the accounting ledger: create, upgrade, sync from the scheduler, import traces."""


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


@ledger.command("import-swf")
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--cluster",
    help="Cluster name to file the jobs under.  [default: the file name less .swf/.gz]",
)
@MAX_BAD_LINES_OPTION
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

    from hpcbridge.ledger.sources.swf import SwfTrace, import_swf
    from hpcbridge.ledger.store import Ledger

    trace = SwfTrace(trace_file, max_bad_lines=max_bad_lines)
    started = time.perf_counter()
    with Ledger.open(ledger_url) as opened, _trace_progress(trace) as progress:
        written = import_swf(opened, trace, cluster=cluster, progress=progress)
        where = opened.engine.url.render_as_string(hide_password=True)
    click.echo(
        f"imported {written:,} jobs from {trace_file} as cluster {cluster or trace.cluster_name!r} "
        f"into {where} in {time.perf_counter() - started:.1f} s"
    )
    if trace.placed_at_submit:
        click.echo(
            f"note: {trace.placed_at_submit:,} jobs with an unknown wait time (-1) were charged "
            "from their submit time",
            err=True,
        )
    warn_bad_lines(trace, "imported")


@contextlib.contextmanager
def _trace_progress(trace: SwfTrace) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the file's bytes on an interactive terminal; nothing otherwise."""
    with terminal_progress() as bar:
        if bar is None:
            yield None
            return
        task = bar.add_task(f"importing {trace.path.name}", total=trace.total_bytes)
        yield lambda _rows: bar.update(task, completed=trace.bytes_read)


@ledger.command("sync")
@SITE_OPTION
@LEDGER_OPTION
@click.option(
    "--lock-timeout",
    type=Seconds(),
    default=600.0,
    show_default=True,
    help="Seconds to wait for another sync of the same cluster to finish.",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="Print nothing on success (for cron); errors still go to stderr.",
)
@JSON_OPTION
@reports_errors
def ledger_sync(
    site: str, ledger_url: str | None, lock_timeout: float, quiet: bool, as_json: bool
) -> None:
    """Read the site's new accounting into the ledger; safe to run from cron.

    Exit status 0 when every source was read, 7 (partial) when some windows or sources
    failed and will be retried next time, or the failing error's own code when nothing
    could be read: 3 for PBS accounting logs this user may not read, 5 unreachable, 8 ledger.
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
    elif not quiet:
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

    with terminal_progress(quiet) as display:
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
