"""``hpcbridge workflow``: submit a DAG of stages, then watch, resume and draw it by id.

Only click is imported here at start-up; the workflow model, networkx, Rich and the backends
load inside the command that runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from hpcbridge.cli.options import (
    EXIT_JOB_FAILED,
    EXIT_WAIT_TIMEOUT,
    JSON_OPTION,
    RECORDED_SITE_OPTION,
    SITE_OPTION,
    Command,
    echo_json,
    ledger_option,
    reports_errors,
)

if TYPE_CHECKING:
    from datetime import datetime

    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import SiteConfig
    from hpcbridge.workflows.status import StageStatus
    from hpcbridge.workflows.store import WorkflowRecord, WorkflowStore

STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="HPCBRIDGE_WORKFLOW_DIR",
    show_default="$HPCBRIDGE_WORKFLOW_DIR or $XDG_STATE_HOME/hpcbridge/workflows",
    help="Where workflow records (stage -> job ids) are kept, unless --ledger is given.",
)

LEDGER_OPTION = ledger_option(
    "Keep workflow records in this ledger (and, on a site with budgets, read budgets from it)",
    "state files (budgets: the private ledger)",
)


def _store_options(command: Command) -> Command:
    """--state-dir and --ledger: where the workflow's record lives."""
    return STATE_DIR_OPTION(LEDGER_OPTION(command))


# workflow_export.FORMATS, written out so that `hpcbridge --help` need not load Jinja; a test
# keeps the two equal.
FORMATS = ("dot", "mermaid", "json", "png", "svg")


@click.group()
def workflow() -> None:
    """Submit stages with native dependencies; status, resume and show them by workflow id."""


@workflow.command()
@click.argument("workflow_file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Submit even when the deadline looks infeasible.")
@click.option(
    "--on-risk",
    type=click.Choice(["warn", "raise"]),
    help="A deadline at risk: only say so, or raise every stage a level  [default: the site's]",
)
@SITE_OPTION
@_store_options
@JSON_OPTION
@reports_errors
def submit(
    workflow_file: str,
    *,
    force: bool,
    on_risk: str | None,
    site: str,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Validate WORKFLOW_FILE, submit every stage, and print the workflow id.

    WORKFLOW_FILE lists stages; or it is a job file whose checkpoint.total_runtime is longer
    than one job may run, submitted as a chain of segments (seg01, seg02, ...).

    On a site with budgets the whole workflow (every stage, every array task, every segment)
    is checked first against its accounts' budgets in the ledger (--ledger, else
    $HPCBRIDGE_LEDGER, else the private ledger, as for `hpcbridge submit`): over budget it is
    refused whole (exit 4), or with on_exhausted: hold submitted with its entry stages held.

    A workflow with a deadline is estimated first (likely, at risk, infeasible, with the
    numbers, from the same ledger): infeasible is refused (exit 3) unless --force.
    """
    from hpcbridge.errors import HpcBridgeError
    from hpcbridge.workflows.run import submit_workflow
    from hpcbridge.workflows.segments import workflow_from_file

    site_ref = os.path.abspath(site) if os.path.isfile(site) else site
    with workflow_store(state_dir, ledger_url) as store, _open(site_ref) as cluster:
        spec = workflow_from_file(workflow_file, cluster.site)
        deadline = spec.deadline is not None
        with (
            policy_ledger(cluster, ledger_url, deadline=deadline) as ledger,
            _progress(as_json, "submitting") as progress,
        ):
            try:
                record = submit_workflow(
                    cluster,
                    spec,
                    store,
                    site=site_ref,
                    progress=progress,
                    ledger=ledger,
                    notify=_warn,
                    force=force,
                    on_risk=on_risk,
                )
            except HpcBridgeError as error:
                for note in getattr(error, "__notes__", []):  # which workflow id to resume
                    click.echo(note, err=True)
                raise
    _print_jobs(record, record.workflow.order(), as_json)


@workflow.command()
@click.argument("workflow_id")
@RECORDED_SITE_OPTION
@_store_options
@JSON_OPTION
@reports_errors
def status(
    workflow_id: str, site: str | None, state_dir: str | None, ledger_url: str | None, as_json: bool
) -> None:
    """Show every stage's job and state; cancels dependents that can never run."""
    from hpcbridge.workflows.status import workflow_status

    with workflow_store(state_dir, ledger_url) as store:
        record = store.load(workflow_id)
    with open_recorded(record, site) as cluster:
        stages = workflow_status(cluster, record)
        held = held_for_budget(cluster)
    if as_json:
        echo_json(
            {
                "workflow_id": record.workflow_id,
                "name": record.workflow.name,
                "site": record.site,
                "stages": [_stage_json(stage, held) for stage in stages],
            }
        )
        return
    _print_table(stages, held)
    if all(stage.outputs for stage in record.workflow.stages) and any(
        stage.array for stage in record.workflow.stages
    ):
        from hpcbridge.workflows.preview import frames

        found = frames(record)
        missing = f"; missing {found.missing_text}" if found.missing else ""
        click.echo(f"outputs: {len(found.done)} of {found.total} done{missing}")


@workflow.command()
@click.argument("workflow_id")
@click.option("--resubmit", is_flag=True, help="Submit the missing indices again, as one array.")
@RECORDED_SITE_OPTION
@_store_options
@JSON_OPTION
@reports_errors
def frames(
    workflow_id: str,
    *,
    resubmit: bool,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Which array indices of WORKFLOW_ID have their output (the stages' ``outputs`` pattern:
    there and not empty) and which are missing; --resubmit runs the missing ones again."""
    from hpcbridge.workflows.preview import frames as find_frames
    from hpcbridge.workflows.preview import resubmit_missing

    with workflow_store(state_dir, ledger_url) as store:
        record = store.load(workflow_id)
    found = find_frames(record)
    job_id = None
    if resubmit and found.missing:
        with open_recorded(record, site) as cluster:
            job_id = resubmit_missing(cluster, record, found)
    if as_json:
        echo_json(
            {
                "workflow_id": workflow_id,
                "total": found.total,
                "done": found.done,
                "missing": found.missing,
                "resubmitted_as": job_id,
            }
        )
        return
    click.echo(f"{len(found.done)} of {found.total} done")
    if found.missing:
        click.echo(f"missing: {found.missing_text}")
    if job_id is not None:
        click.echo(f"resubmitted the missing ones as job {job_id}")
    elif resubmit:
        click.echo("nothing missing; nothing submitted")


@workflow.command()
@click.argument("workflow_id")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds between looks at the workflow (one scheduler query each).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after this many seconds (exit 6); the retries already made stay.",
)
@RECORDED_SITE_OPTION
@_store_options
@JSON_OPTION
@reports_errors
def watch(
    workflow_id: str,
    *,
    interval: float,
    timeout: float | None,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Follow a workflow to its end, retrying stages as their retry policy says.

    A stage that ends in one of its ``retry.on`` states (NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY
    by default) with attempts left is submitted again, to start after its backoff, with
    more memory after OUT_OF_MEMORY, and the stages its failure cancelled with it; other
    failures are left as they are. Exits 0 when every stage completed, 1 otherwise.
    """
    from hpcbridge.workflows.watch import watch_workflow

    def said(name: str, job_id: str | None, reason: str) -> None:
        retried.append({"stage": name, "job_id": job_id, "why": reason})
        if not as_json:
            click.echo(f"{name}\tresubmitted as job {job_id}: {reason}", err=True)

    retried: list[dict[str, object]] = []
    with (
        workflow_store(state_dir, ledger_url) as store,
        open_recorded(store.load(workflow_id), site) as cluster,
    ):
        ended = watch_workflow(
            cluster, store, workflow_id, interval=interval, timeout=timeout, retried=said
        )
        held = held_for_budget(cluster)
    if ended is None:
        click.echo(f"workflow {workflow_id}: still running after {timeout:g} s", err=True)
        sys.exit(EXIT_WAIT_TIMEOUT)
    record, stages = ended
    if as_json:
        echo_json(
            {
                "workflow_id": record.workflow_id,
                "retried": retried,
                "stages": [_stage_json(stage, held) for stage in stages],
            }
        )
    else:
        _print_table(stages, held)
    if any(stage.state != "COMPLETED" for stage in stages):
        sys.exit(EXIT_JOB_FAILED)


@workflow.command()
@click.argument("workflow_id")
@click.option(
    "--file",
    "fixed_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A fixed workflow file (same stage names) whose specs the resubmitted stages take.",
)
@RECORDED_SITE_OPTION
@_store_options
@JSON_OPTION
@reports_errors
def resume(
    workflow_id: str,
    *,
    fixed_file: str | None,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Resubmit failed, cancelled and never-submitted stages, wired to the jobs kept.

    On a site with budgets the stages resubmitted are checked together first, as by submit.
    """
    from hpcbridge.workflows.model import Workflow
    from hpcbridge.workflows.run import resume_workflow

    fixed = Workflow.from_yaml(fixed_file) if fixed_file else None
    with (
        workflow_store(state_dir, ledger_url) as store,
        open_recorded(store.load(workflow_id), site) as cluster,
        policy_ledger(cluster, ledger_url) as ledger,
        _progress(as_json, "resubmitting") as progress,
    ):
        record, rerun, skipped = resume_workflow(
            cluster,
            store,
            workflow_id,
            workflow=fixed,
            progress=progress,
            ledger=ledger,
            notify=_warn,
        )
    if as_json:
        echo_json(
            {
                "workflow_id": record.workflow_id,
                "resubmitted": {name: record.latest_job(name) for name in rerun},
                "not_runnable": skipped,
            }
        )
        return
    if not rerun:
        click.echo(f"workflow {record.workflow_id}: nothing to resubmit")
    else:
        _print_jobs(record, rerun, as_json=False)
    for name, reason in skipped.items():
        click.echo(f"{name}\tnot resubmitted: {reason}")


@workflow.command()
@click.argument("workflow_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="mermaid", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file.")
@click.option(
    "--predict",
    is_flag=True,
    help="Expect run times predicted from the accounting ledger (--ledger, $HPCBRIDGE_LEDGER "
    "or the default one) instead of walltimes.",
)
@RECORDED_SITE_OPTION
@_store_options
@reports_errors
def show(
    workflow_id: str,
    *,
    fmt: str,
    out: str | None,
    predict: bool,
    site: str | None,
    state_dir: str | None,
    ledger_url: str | None,
) -> None:
    """Draw the DAG and its expected-vs-actual timeline (png and svg need --out or a pipe)."""
    from hpcbridge.files import write_atomically
    from hpcbridge.workflows.export import render_workflow
    from hpcbridge.workflows.status import predicted_durations, workflow_view

    with workflow_store(state_dir, ledger_url) as store:
        record = store.load(workflow_id)
    with open_recorded(record, site) as cluster:
        view = workflow_view(cluster, record)
        predicted = None
        if predict:
            import getpass

            from hpcbridge.ledger.store import Ledger

            with Ledger.open(ledger_url, upgrade=False) as ledger:
                predicted = predicted_durations(cluster, record, ledger, user=getpass.getuser())
    drawn = render_workflow(view, fmt, predicted=predicted)
    data = drawn.encode() if isinstance(drawn, str) else drawn
    if out is None:
        click.echo(data, nl=False)  # bytes go to the binary stream as they are
        return
    write_atomically(out, data)
    click.echo(f"wrote {out}", err=True)


@contextmanager
def workflow_store(state_dir: str | None, ledger_url: str | None) -> Iterator[WorkflowStore]:
    """The ledger's workflows table when a ledger is named, else the state files."""
    from hpcbridge.workflows.store import LedgerStore, StateFileStore

    if ledger_url is None:
        yield StateFileStore(state_dir)
        return
    from hpcbridge.ledger.store import Ledger

    with Ledger.open(ledger_url) as ledger:
        yield LedgerStore(ledger)


@contextmanager
def policy_ledger(
    cluster: Cluster, ledger_url: str | None, *, deadline: bool = False
) -> Iterator[Ledger | None]:
    """The ledger budgets and deadlines are read from, on a site with budgets or for a
    workflow with a ``deadline`` (else None, and none opened).

    The same --ledger as the workflow store's when given; without one, the store is the state
    files but budgets and deadlines still need a ledger, so the private one is read, as
    `hpcbridge submit` reads it.
    """
    if not cluster.site.budgets.accounts and not deadline:
        yield None
        return
    from hpcbridge.ledger.store import Ledger

    with Ledger.open(ledger_url, upgrade=False) as ledger:
        yield ledger


def held_for_budget(cluster: Cluster) -> set[str]:
    """The jobs of the site held by hpcbridge until budget frees up (hpcbridge.policy)."""
    if not cluster.site.budgets.accounts:
        return set()
    from hpcbridge.policy.waiting import WaitingJobs, to_release

    records = WaitingJobs(cluster.site.name).records()
    return {job for key, record in records.items() for job in to_release(key, record)}


def _warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


def _open(site: str) -> Cluster:
    from hpcbridge.cluster import Cluster

    return Cluster.from_site(site)


def open_recorded(record: WorkflowRecord, site: str | None) -> Cluster:
    """The cluster of a workflow's jobs: through the site it recorded, or through --site.

    --site must reach the same cluster (scheduler and cluster name) as the recorded site: job
    ids on another cluster are other jobs, which status would cancel and resume wire new
    stages to. A recorded site that no longer loads (a moved YAML file) cannot be compared,
    and --site is then how the workflow is reached at all.
    """
    from hpcbridge.cluster import Cluster
    from hpcbridge.errors import ConfigError
    from hpcbridge.site import SiteConfig

    if site is None:
        return Cluster.from_site(record.site)
    chosen = SiteConfig.load(site)
    try:
        recorded = SiteConfig.load(record.site)
    except ConfigError:
        return Cluster(chosen)
    if _cluster_of(chosen) != _cluster_of(recorded):
        raise click.BadParameter(
            f"{site!r} reaches {_cluster_of(chosen)}, but workflow {record.workflow_id} was "
            f"submitted to {_cluster_of(recorded)} (site {record.site!r})",
            param_hint="'--site'",
        )
    return Cluster(chosen)


def _cluster_of(site: SiteConfig) -> str:
    return f"{site.scheduler} cluster {site.cluster_name or site.name!r}"


@contextmanager
def _progress(quiet: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while stages are submitted (none with --json)."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _print_jobs(record: WorkflowRecord, stages: list[str], as_json: bool) -> None:
    jobs = {name: record.latest_job(name) for name in stages}
    if as_json:
        echo_json({"workflow_id": record.workflow_id, "site": record.site, "jobs": jobs})
        return
    click.echo(f"workflow {record.workflow_id}")
    for name, job_id in jobs.items():
        click.echo(f"{name}\t{job_id}")


def _stage_json(stage: StageStatus, held: set[str]) -> dict[str, object]:
    from hpcbridge.workflows.status import started_at

    info = stage.info
    started = started_at(info)
    held_here = stage.job_id in held and stage.state == "PENDING"
    return {
        "stage": stage.name,
        "job_id": stage.job_id,
        "state": stage.state,
        "reason": _BUDGET_HOLD if held_here else info.reason if info else None,
        "held_for_budget": held_here,
        "start": started.isoformat() if started else None,
        "end": info.end_time.isoformat() if info and info.end_time else None,
        "note": stage.note,
    }


_BUDGET_HOLD = "held for budget (hpcbridge budget release)"


def _print_table(stages: list[StageStatus], held: set[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from hpcbridge.workflows.status import started_at

    table = Table(box=None, pad_edge=False)
    for heading in ("STAGE", "JOBID", "STATE", "REASON", "START", "END", "NOTE"):
        table.add_column(heading)
    for stage in stages:
        row = _stage_json(stage, held)
        table.add_row(
            stage.name,
            stage.job_id or "",
            stage.state,
            str(row["reason"] or ""),
            _clock(started_at(stage.info)),
            _clock(stage.info.end_time if stage.info else None),
            stage.note,
        )
    Console(soft_wrap=True).print(table)


def _clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%m-%d %H:%M:%S") if moment else ""
