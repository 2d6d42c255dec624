"""What every ``hpcbridge`` command shares: exit codes, error reporting, JSON output.

Exit codes (also in ``hpcbridge --help``):
  0  success
  1  a job ended in a state other than COMPLETED (submit --wait, wait)
  2  bad command-line usage
  3  invalid job file, site config, template or trace file; a site this user cannot use
     (ledger sync: PBS accounting logs it may not read)
  4  the scheduler refused the request or does not know the job
  5  the scheduler or the transport could not be reached
  6  --wait gave up before the jobs finished
  7  a ledger sync read some sources or windows but not all (partial)
  8  the ledger database could not be opened, migrated or written
  9  a workflow id is unknown or its state unusable; no valid checkpoint; too little history
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

    from hpcbridge.ledger.sources.swf import SwfTrace

EXIT_JOB_FAILED = 1
EXIT_INVALID = 3
EXIT_SCHEDULER = 4
EXIT_UNREACHABLE = 5
EXIT_WAIT_TIMEOUT = 6
EXIT_PARTIAL = 7
EXIT_LEDGER = 8
EXIT_NO_STATE = 9

EPILOG = """Exit codes: 0 success; 1 a job did not complete; 2 usage error; 3 invalid job file,
site config, template or trace, or PBS accounting logs this user may not read; 4 the scheduler
refused or does not know the job; 5 scheduler or transport unreachable; 6 --wait timed out;
7 ledger sync partial; 8 ledger database error; 9 unknown workflow, no valid checkpoint or too
little history."""

Command = TypeVar("Command", bound=Callable[..., Any])

_SITE_HELP = "A site name from site_configs/ or ~/.config/hpcbridge/sites/, or a YAML path"
SITE_OPTION = click.option(
    "--site",
    default=lambda: os.environ.get("HPCBRIDGE_SITE", "local"),
    show_default="$HPCBRIDGE_SITE or local",
    help=f"{_SITE_HELP}.",
)
# A workflow's record names the site it was submitted to, so $HPCBRIDGE_SITE (set for new
# work) must not redirect it; --site is for reaching the same cluster another way.
RECORDED_SITE_OPTION = click.option(
    "--site",
    default=None,
    show_default="the site it was submitted to",
    help=f"{_SITE_HELP}, reaching the same cluster (an SSH site of it, say).",
)
# Verbs that take job ids or a workflow: the workflow's own site, else the usual default.
JOBS_OR_WORKFLOW_SITE_OPTION = click.option(
    "--site",
    default=None,
    show_default="a workflow's recorded site; for job ids $HPCBRIDGE_SITE or local",
    help=f"{_SITE_HELP}.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def exit_code_for(error: Exception) -> int:
    """The documented exit code of an hpcbridge error."""
    from hpcbridge import errors

    if isinstance(
        error, errors.ConfigError | errors.SpecError | errors.RenderError | errors.TraceError
    ):
        return EXIT_INVALID
    if isinstance(error, errors.WaitTimeout):
        return EXIT_WAIT_TIMEOUT
    if isinstance(error, errors.LedgerError):
        return EXIT_LEDGER
    if isinstance(error, errors.WorkflowError | errors.CheckpointError | errors.ForecastError):
        return EXIT_NO_STATE
    if isinstance(error, errors.TransportError | errors.SchedulerUnavailable):
        return EXIT_UNREACHABLE
    return EXIT_SCHEDULER


def reports_errors(command: Command) -> Command:
    """Turn an hpcbridge error into one ``error:`` line and its exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hpcbridge.errors import HpcBridgeError

        try:
            return command(*args, **kwargs)
        except HpcBridgeError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(exit_code_for(error))

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    import json

    click.echo(json.dumps(data, indent=2))


def ledger_option(purpose: str, when_unset: str) -> Callable[[Command], Command]:
    """--ledger URL, defaulting to $HPCBRIDGE_LEDGER on every verb; ``when_unset`` says what
    the verb does with neither (open the private ledger, or keep workflow state files)."""
    return click.option(
        "--ledger",
        "ledger_url",
        default=lambda: os.environ.get("HPCBRIDGE_LEDGER"),
        show_default=f"$HPCBRIDGE_LEDGER, else {when_unset}",
        help=f"{purpose}: sqlite:///PATH or postgresql://USER@HOST/DB.",
    )


LEDGER_OPTION = ledger_option("Ledger database URL", "~/.local/share/hpcbridge/ledger.sqlite")


MAX_BAD_LINES_OPTION = click.option(
    "--max-bad-lines",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Malformed job lines to skip (and list) before deciding the file is not SWF.",
)
_SHOWN_BAD_LINES = 20


def warn_bad_lines(trace: SwfTrace, left_out: str) -> None:
    """List the trace lines a command skipped on stderr, so a result read from a damaged
    trace says so: how many, and the first ones with their line number and field.

    ``left_out`` says what skipping cost them ("imported", "scored").
    """
    if not trace.bad_lines:
        return
    click.echo(f"warning: {len(trace.bad_lines)} malformed lines not {left_out}:", err=True)
    for bad in trace.bad_lines[:_SHOWN_BAD_LINES]:
        click.echo(f"  {bad}", err=True)
    if len(trace.bad_lines) > _SHOWN_BAD_LINES:
        click.echo(f"  ... and {len(trace.bad_lines) - _SHOWN_BAD_LINES} more", err=True)


@contextlib.contextmanager
def terminal_progress(quiet: bool = False) -> Iterator[RichProgress | None]:
    """A Rich progress display on an interactive stderr; None under cron or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        yield bar


class UtcDate(click.DateTime):
    """A moment in UTC, within what the ledger holds: epoch seconds from 1970 on (schedulers
    have no earlier data), and before year 9000, so month arithmetic cannot leave the
    calendar. A date outside is a usage error naming the option, not a traceback."""

    name = "date"
    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(9000, 1, 1, tzinfo=UTC)

    def __init__(self) -> None:
        super().__init__(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m"])

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        moment = super().convert(value, param, ctx)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        if not self.EARLIEST <= moment < self.LATEST:
            self.fail(
                f"{value!r} is outside {self.EARLIEST:%Y-%m-%d} .. {self.LATEST:%Y-%m-%d}, "
                "the times the ledger holds",
                param,
                ctx,
            )
        return moment


class Seconds(click.FloatRange):
    """A duration in seconds: a number from ``least`` (default 0) to ``most`` (default none)
    and not NaN (which compares false with every bound, so a plain FloatRange lets it
    through). An interval slept on needs ``most``: time.sleep overflows on 1e309."""

    name = "seconds"

    def __init__(self, least: float = 0, most: float | None = None) -> None:
        super().__init__(min=least, max=most)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds
