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
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.ledger.sync import SyncStatus, sources_for, sync
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports.factory import make_transport

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


@ledger.command("steps")
@click.argument("job_id")
@click.option("--cluster", help="The cluster the job ran on, when the ledger holds that id twice.")
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def ledger_steps(job_id: str, cluster: str | None, ledger_url: str | None, as_json: bool) -> None:
    """Show the job steps of JOB_ID (123, or 123_4 for an array task) that the ledger's syncs
    recorded: each srun of each run, with its state, exit code, times and resources.

    Slurm only: PBS accounting logs record no steps. Exit status 8 when the ledger does not
    hold the job (not synced yet).
    """
    import dataclasses
    from datetime import datetime

    from hpcbridge.jobs.units import format_duration
    from hpcbridge.ledger.steps import steps_of
    from hpcbridge.ledger.store import Ledger

    with Ledger.open(ledger_url, upgrade=False) as opened:
        found = steps_of(opened, job_id, cluster=cluster)
    if as_json:
        echo_json(
            [
                {
                    "cluster": s.cluster,
                    "job_id": s.job_id,
                    "array_index": None if s.array_index < 0 else s.array_index,
                    "attempt": s.attempt,
                    **{
                        name: value.isoformat() if isinstance(value, datetime) else value
                        for name, value in dataclasses.asdict(s.step).items()
                    },
                }
                for s in found
            ]
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    headings = ("RUN", "STEP", "NAME", "STATE", "EXIT", "START", "ELAPSED", "CPUS", "GPUS")
    for heading in (*headings, "NODES", "MAXRSS", "CPUTIME"):
        table.add_column(heading)
    for s in found:
        step = s.step
        table.add_row(
            str(s.attempt),
            step.step_id,
            step.name or "",
            step.state.value,
            "" if step.exit_code is None else f"{step.exit_code}:{step.exit_signal or 0}",
            "" if step.start is None else step.start.strftime("%Y-%m-%d %H:%M:%S"),
            "" if step.elapsed_s is None else format_duration(step.elapsed_s),
            "" if step.alloc_cpus is None else str(step.alloc_cpus),
            "" if step.alloc_gpus is None else str(step.alloc_gpus),
            step.node_list or "",
            "" if step.max_rss_mb is None else f"{step.max_rss_mb:.0f}M",
            "" if step.cpu_time_s is None else f"{step.cpu_time_s:.1f}s",
        )
    if not found:
        click.echo(f"job {job_id} has no steps in the ledger", err=True)
        return
    # Piped, the table keeps its natural width (as report usage's) rather than 80 columns.
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 10_000).print(table)


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
