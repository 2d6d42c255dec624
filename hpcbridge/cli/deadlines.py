"""``hpcbridge deadlines [check FILE]``: whether a job or workflow can meet its deadline before
it is submitted, and where every tracked deadline stands."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from hpcbridge.cli.options import JSON_OPTION, SITE_OPTION, echo_json, reports_errors
from hpcbridge.cli.workflow import LEDGER_OPTION, STATE_DIR_OPTION
from hpcbridge.jobs.units import format_signed_duration as _clock
from hpcbridge.jobs.units import format_utc_minute as _at

if TYPE_CHECKING:
    from hpcbridge.policy.feasibility import Feasibility


@click.group(invoke_without_command=True)
@click.option("--client", help="Only this client's (account's) deadlines.")
@SITE_OPTION
@STATE_DIR_OPTION
@LEDGER_OPTION
@JSON_OPTION
@click.pass_context
@reports_errors
def deadlines(
    context: click.Context,
    *,
    client: str | None,
    site: str,
    state_dir: str | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Every job and workflow submitted with a deadline that is not over: its projected
    finish from live status, slack and verdict; those over are recorded as met or missed."""
    if context.invoked_subcommand is not None:
        return
    from hpcbridge.cli.workflow import workflow_store
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.workflows.deadlines import deadline_rows

    with (
        Ledger.open(ledger_url) as ledger,
        workflow_store(state_dir, ledger_url) as store,
        Cluster.from_site(site) as cluster,
    ):
        rows = deadline_rows(cluster, ledger, store, client=client)
    if as_json:
        echo_json({"deadlines": [_jsonable(asdict(row)) for row in rows]})
        return
    if not rows:
        click.echo("no open deadlines")
    for row in rows:
        if row.finished_at is not None:
            click.echo(
                f"{row.kind} {row.ref} ({row.name}, {row.client or 'no client'}): {row.state}, "
                f"{row.verdict}: finished {_at(row.finished_at)}, deadline {_at(row.deadline)}"
            )
            continue
        click.echo(
            f"{row.kind} {row.ref} ({row.name}, {row.client or 'no client'}): {row.state}, "
            f"projected {_at(row.projected_finish)}, deadline {_at(row.deadline)}, "
            f"slack {_clock(row.slack_s)}: {row.verdict}"
        )


@deadlines.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@SITE_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def deadlines_check(file: str, *, site: str, ledger_url: str | None, as_json: bool) -> None:
    """Estimate whether FILE (a job with a deadline, or a workflow with one) would finish in
    time if submitted now: likely, at risk or infeasible, stage by stage. Nothing is submitted."""
    from hpcbridge.cluster import Cluster
    from hpcbridge.errors import SpecError
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.feasibility import check_deadline
    from hpcbridge.policy.hardware import place
    from hpcbridge.workflows.deadlines import workflow_feasibility
    from hpcbridge.workflows.segments import workflow_from_file

    with Ledger.open(ledger_url) as ledger, Cluster.from_site(site) as cluster:
        if is_workflow_file(file):
            feasibility = workflow_feasibility(
                cluster, ledger, workflow_from_file(file, cluster.site)
            )
        else:
            spec = cluster.site.prepare(place(cluster.site, JobSpec.from_yaml(file)))
            if spec.deadline is None:
                raise SpecError(f"job file {file}: deadline: give one to check it")
            feasibility = check_deadline(cluster, ledger, [spec], {}, spec.deadline)
    _print_feasibility(feasibility, as_json=as_json)


def is_workflow_file(file: str) -> bool:
    """Whether FILE holds a workflow (a list of stages) rather than one job."""
    import yaml

    from hpcbridge.errors import SpecError

    try:
        with open(file) as stream:
            data = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read {file}: {exc}") from exc
    return isinstance(data, dict) and "stages" in data


def _print_feasibility(feasibility: Feasibility, *, as_json: bool) -> None:
    if as_json:
        echo_json(_jsonable(asdict(feasibility)))
        return
    click.echo(f"{feasibility.verdict}: {feasibility.reason}")
    click.echo(f"critical path: {' -> '.join(feasibility.critical_path)}")
    for stage in feasibility.stages:
        click.echo(
            f"  {stage.name}: wait {_clock(stage.wait_s)} (bound {_clock(stage.wait_high_s)}; "
            f"{stage.wait_basis}), run {_clock(stage.run_s)} (bound {_clock(stage.run_high_s)}; "
            f"{stage.run_basis}), finish {_at(stage.finish)}"
        )


def _jsonable(data: Any) -> Any:
    """Times as ISO 8601 text, all the way down."""
    if isinstance(data, datetime):
        return data.astimezone(UTC).isoformat()
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_jsonable(value) for value in data]
    return data
