"""What every ``hpcbridge`` command shares: exit codes, error reporting, JSON output.

Exit codes (also in ``hpcbridge --help``):
  0  success
  1  a job ended in a state other than COMPLETED (submit --wait, wait)
  2  bad command-line usage
  3  invalid job file, site config, template or trace file
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
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

EXIT_JOB_FAILED = 1
EXIT_INVALID = 3
EXIT_SCHEDULER = 4
EXIT_UNREACHABLE = 5
EXIT_WAIT_TIMEOUT = 6
EXIT_PARTIAL = 7
EXIT_LEDGER = 8
EXIT_NO_STATE = 9

EPILOG = """Exit codes: 0 success; 1 a job did not complete; 2 usage error; 3 invalid job file,
site config, template or trace; 4 the scheduler refused or does not know the job; 5 scheduler or
transport unreachable; 6 --wait timed out; 7 ledger sync partial; 8 ledger database error;
9 unknown workflow, no valid checkpoint or too little history."""

Command = TypeVar("Command", bound=Callable[..., Any])

SITE_OPTION = click.option(
    "--site",
    default=lambda: os.environ.get("HPCBRIDGE_SITE", "local"),
    show_default="$HPCBRIDGE_SITE or local",
    help="A site name from site_configs/ or ~/.config/hpcbridge/sites/, or a YAML path.",
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


LEDGER_OPTION = click.option(
    "--ledger",
    "ledger_url",
    default=lambda: os.environ.get("HPCBRIDGE_LEDGER"),
    show_default="$HPCBRIDGE_LEDGER or ~/.local/share/hpcbridge/ledger.sqlite",
    help="Ledger database URL: sqlite:///PATH or postgresql://USER@HOST/DB.",
)


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
