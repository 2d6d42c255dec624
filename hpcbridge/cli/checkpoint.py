"""``hpcbridge checkpoint list|verify|history DIR``: what a job's checkpoint wrapper left behind.

DIR is read on this machine, so run these where the checkpoint directory is visible (the
login node of the cluster, usually). Only click is imported at start-up.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from hpcbridge.cli.options import EXIT_NO_STATE, JSON_OPTION, SITE_OPTION, echo_json, reports_errors

if TYPE_CHECKING:
    from hpcbridge.jobs.checkpoint import AttemptSummary, Checkpoint

DIRECTORY = click.argument("directory", type=click.Path(file_okay=False))


@click.group()
def checkpoint() -> None:
    """Inspect checkpoint directories written by the checkpoint wrapper of a job."""


@checkpoint.command("list")
@DIRECTORY
@JSON_OPTION
@reports_errors
def checkpoint_list(directory: str, as_json: bool) -> None:
    """Every checkpoint, newest first, each verified against its manifest."""
    from hpcbridge.jobs.checkpoint import list_checkpoints

    _show(list_checkpoints(directory), as_json)


@checkpoint.command("verify")
@DIRECTORY
@JSON_OPTION
@reports_errors
def checkpoint_verify(directory: str, as_json: bool) -> None:
    """The checkpoint a restart would use; exit 9 when there is none."""
    from hpcbridge.jobs.checkpoint import latest_valid, list_checkpoints

    found = list_checkpoints(directory)
    bad = [c for c in found if not c.valid]
    for corrupt in bad:
        click.echo(f"{corrupt.name}: {corrupt.problem}", err=True)
    latest = latest_valid(directory)
    if as_json:
        echo_json({"latest_valid": _record(latest), "invalid": [_record(c) for c in bad]})
    else:
        click.echo(str(latest.path))


@checkpoint.command("history")
@DIRECTORY
@click.option("--job", "job_id", required=True, help="The job id (the same for every requeue).")
@SITE_OPTION
@JSON_OPTION
@reports_errors
def checkpoint_history(directory: str, job_id: str, site: str, as_json: bool) -> None:
    """Each run of a job: how it ended, lost work and recovery time (Slurm sites)."""
    from hpcbridge.backends.slurm import cli
    from hpcbridge.backends.slurm.accounting import runs_from_sacct
    from hpcbridge.errors import SchedulerError, SpecError
    from hpcbridge.jobs.checkpoint import attempt_history
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports.factory import make_transport

    config = SiteConfig.load(site)
    if config.scheduler != "slurm":
        raise SpecError(f"--site: history reads sacct; {site!r} runs {config.scheduler}")
    with contextlib.closing(make_transport(config)) as transport:
        result = transport.run(cli.sacct_history([job_id], datetime.now(UTC)), env=cli.UTC_ENV)
    if not result.ok:
        raise SchedulerError(
            f"sacct failed for job {job_id}",
            argv=result.argv,
            returncode=result.returncode,
            stderr=result.stderr,
        )
    history = attempt_history(directory, runs_from_sacct(result.stdout))
    if not history:
        click.echo(f"error: sacct has no run of job {job_id}", err=True)
        sys.exit(EXIT_NO_STATE)
    if as_json:
        echo_json([_attempt(a) for a in history])
        return
    click.echo(
        "attempt  state       node  start                end                 "
        "  lost_s  recovery_s  resumed_from"
    )
    for a in history:
        click.echo(
            f"{a.attempt:<8} {a.state.value:<11} {a.node or '-':<5} {_time(a.start):<20} "
            f"{_time(a.end):<20} {_number(a.lost_work_s):>6}  {_number(a.recovery_s):>10}  "
            f"{a.resumed_from or '-'}"
        )


def _show(found: list[Checkpoint], as_json: bool) -> None:
    if as_json:
        echo_json([_record(c) for c in found])
        return
    for c in found:
        state = "valid" if c.valid else f"INVALID ({c.problem})"
        click.echo(f"{c.name}  {_time(c.created)}  {c.reason or '-':<8}  {state}")


def _record(c: Checkpoint) -> dict[str, Any]:
    return {
        "name": c.name,
        "path": str(c.path),
        "created": c.created.isoformat() if c.created else None,
        "job_id": c.job_id,
        "attempt": c.attempt,
        "node": c.node,
        "reason": c.reason,
        "valid": c.valid,
        "problem": c.problem,
    }


def _attempt(a: AttemptSummary) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "state": a.state.value,
        "node": a.node,
        "start": a.start.isoformat() if a.start else None,
        "end": a.end.isoformat() if a.end else None,
        "resumed_from": a.resumed_from,
        "checkpoints": a.checkpoints,
        "lost_work_s": a.lost_work_s,
        "recovery_s": a.recovery_s,
    }


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
