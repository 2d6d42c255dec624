"""The "sacct" source: Slurm accounting read from slurmdbd in bounded windows.

Each window is one ``sacct --duplicates --allusers --starttime --endtime --state=<all>`` call
(cli.sacct_window), so slurmdbd is never asked for a huge range at once. Naming every state
makes sacct select what was pending, running or ending in the window, jobs cancelled before
they were ever eligible included; a job still running shows up in every later window until it
ends, which is how running jobs get updated.

Attempt numbers. sacct prints no restart count, and a window may hold only the last runs of a
job requeued before it. A run's attempt number is its rank among all the runs of its job in
DBIndex order (accounting.number_runs); the window must therefore hold every earlier run of
each job it numbers. It does for jobs whose runs were all submitted inside the window: a
requeue ends one run and submits the next at the same moment, so the run before a run
submitted at or after the window's start ended inside the window and was selected too. Jobs
with a run submitted before the window's start (less a minute's slack) are read again whole,
with ``sacct --jobs`` and no start time (cli.sacct_history), in batches. That second reading
also matters for usage: with a start time, sacct leaves out steps that ended before it, which
would shrink TotalCPU and MaxRSS of jobs running across the window's start.

Steps. Each run carries its numbered steps (the ``srun`` calls inside it, read from the same
output: accounting.parse_runs), which the ledger keeps under the run; the whole-job reading
above is what gives a run crossing the window's start all of its steps.

Windows are all complete: sacct has no "today's file". The overlap (default an hour) absorbs
records that reach slurmdbd late (slurmctld queues them while slurmdbd is away); after a
longer slurmdbd outage, sync once with a larger overlap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hpcbridge.backends.commands import SchedulerCommands
from hpcbridge.backends.slurm import cli
from hpcbridge.backends.slurm.accounting import number_runs, parse_runs, submitted_before
from hpcbridge.backends.slurm.backend import ERRORS
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.sources.base import Window, spans
from hpcbridge.transports.base import Transport

# How far a requeued run's Submit may trail the End of the run before it (equal on 22.05).
_REQUEUE_SLACK = timedelta(minutes=1)


class SacctSource:
    """Attempts from ``sacct``, through any transport (local or SSH)."""

    name = "sacct"

    def __init__(
        self,
        transport: Transport,
        *,
        window: timedelta = timedelta(days=1),
        overlap: timedelta = timedelta(hours=1),
        first_sync: timedelta = timedelta(days=30),
        jobs_per_call: int = 500,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.commands = SchedulerCommands(transport, ERRORS, attempts=attempts, backoff=backoff)
        self.window = window
        self.overlap = overlap
        self.first_sync = first_sync
        self.jobs_per_call = jobs_per_call

    def windows(self, read_until: datetime | None, now: datetime) -> list[Window]:
        """Windows of at most ``window`` from the watermark less ``overlap`` (first sync:
        ``first_sync`` before now) up to now."""
        start = read_until - self.overlap if read_until is not None else now - self.first_sync
        return spans(start, now, self.window)

    def fetch(self, window: Window) -> list[AttemptRecord]:
        """Every run in the window, numbered among all runs of its job (see the module doc)."""
        runs = parse_runs(self._sacct(cli.sacct_window(window.start, window.end)))
        known = {run.db_index: run for run in runs}
        unsure = submitted_before(runs, window.start + _REQUEUE_SLACK)
        for first in range(0, len(unsure), self.jobs_per_call):
            batch = unsure[first : first + self.jobs_per_call]
            whole = parse_runs(self._sacct(cli.sacct_history(batch, window.end)))
            known.update((run.db_index, run) for run in whole)
        numbers = number_runs(known.values())
        # Each run as the fullest reading has it: the whole-job one where the job was read again.
        return [known[run.db_index].record(numbers[run.db_index]) for run in runs]

    def _sacct(self, argv: list[str]) -> str:
        return self.commands.run(argv, env=cli.UTC_ENV).stdout
