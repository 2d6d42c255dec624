"""The ``hpcbridge`` command: the entry point, which gathers the verb groups of cli/.

Only click is imported at start-up; the job model, Rich, SQLAlchemy and every backend load
inside the command that needs them, so ``hpcbridge --help`` stays fast. Exit codes are listed
in hpcbridge.cli.options and in ``hpcbridge --help``.
"""

from __future__ import annotations

import click

from hpcbridge.cli import jobs
from hpcbridge.cli.budget import budget
from hpcbridge.cli.checkpoint import checkpoint
from hpcbridge.cli.clients import clients
from hpcbridge.cli.deadlines import deadlines
from hpcbridge.cli.forecast import advise, forecast
from hpcbridge.cli.ledger import ledger
from hpcbridge.cli.options import EPILOG
from hpcbridge.cli.priority import priority
from hpcbridge.cli.reports import report
from hpcbridge.cli.top import top
from hpcbridge.cli.workflow import workflow


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpcbridge")
def main() -> None:
    """Drive Slurm, PBS (and the local backend) from one typed job model."""


for command in (
    *jobs.COMMANDS,
    workflow,
    priority,
    deadlines,
    budget,
    clients,
    checkpoint,
    ledger,
    report,
    top,
    forecast,
    advise,
):
    main.add_command(command)
