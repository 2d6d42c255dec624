"""``hpcbridge render|submit|status|wait|cancel|hold|release|requeue`` and ``site``: one job
at a time, on the site's scheduler.

The job model, Rich and every backend load inside the command that needs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from hpcbridge.cli.options import (
    EXIT_JOB_FAILED,
    JSON_OPTION,
    LEDGER_OPTION,
    SITE_OPTION,
    Command,
    Seconds,
    echo_json,
    reports_errors,
)

if TYPE_CHECKING:
    from pathlib import Path

    from hpcbridge.cluster import Cluster
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.jobs.state import JobInfo
    from hpcbridge.policy.hardware import Placement


def _site_options(command: Command) -> Command:
    """--site and --json on every verb, turning hpcbridge errors into documented exit codes."""
    return SITE_OPTION(JSON_OPTION(reports_errors(command)))


def _open(site: str) -> Cluster:
    from hpcbridge.cluster import Cluster

    return Cluster.from_site(site)


def _load(cluster: Cluster, job_file: str) -> JobSpec:
    """The job file, with GPUs asked for by need matched to the site's partitions and types
    (hpcbridge.policy.hardware): the Cluster below refuses an unmatched request."""
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.policy.hardware import place

    return place(cluster.site, JobSpec.from_yaml(job_file))


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "--explain",
    is_flag=True,
    help="Also show the hardware matching: each partition and GPU type considered, its cost, "
    'and why it was chosen or rejected (on stderr; with --json, under "placement").',
)
@_site_options
def render(job_file: str, explain: bool, site: str, as_json: bool) -> None:
    """Print the job script JOB_FILE would be submitted as."""
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.policy.hardware import match, place

    with _open(site) as cluster:
        spec = JobSpec.from_yaml(job_file)
        placement = match(cluster.site, spec) if explain else None
        script = cluster.render(place(cluster.site, spec))
    if as_json:
        answer: dict[str, object] = {"script": script}
        if explain:
            answer["placement"] = None if placement is None else placement.as_json()
        echo_json(answer)
        return
    if explain:
        _explain(placement)
    click.echo(script, nl=False)


def _explain(placement: Placement | None) -> None:
    """The candidates of a GPU request as a table on stderr, so stdout stays the script."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from hpcbridge.jobs.units import format_memory

    console = Console(stderr=True, soft_wrap=True)
    if placement is None:
        console.print("hardware matching: none (the job asks for no GPUs by need: resources.gpu)")
        return
    request = placement.request
    console.print(
        f"hardware matching: {request.count} GPU(s)"
        + (f", at least {format_memory(request.min_memory)} each" if request.min_memory else "")
        + (f", with {', '.join(request.features)}" if request.features else "")
    )
    table = Table(box=None, pad_edge=False)
    for heading in ("", "PARTITION", "TYPE", "COUNT", "MEMORY", "FEATURES", "COST", "VERDICT"):
        table.add_column(heading)
    chosen = placement.chosen
    for index, candidate in enumerate(placement.candidates):
        offer = candidate.offer
        if candidate.rejected is not None:
            verdict = candidate.rejected
        elif index == 0:
            verdict = "chosen: the cheapest that fits"
        elif offer.cost > chosen.offer.cost:
            verdict = "fits, costs more"
        else:
            verdict = "fits, same cost; ranked after (default partition first)"
        table.add_row(
            "*" if index == 0 else "",
            candidate.partition,
            offer.type,
            str(request.count),
            format_memory(offer.memory),
            ",".join(offer.features) or "-",
            f"{offer.cost:g}",
            Text(verdict),  # a limit's message is plain text, not Rich markup
        )
    console.print(table)


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option("--wait", "wait_for_end", is_flag=True, help="Wait until the job ends.")
@click.option("--timeout", type=Seconds(), default=None, help="Seconds --wait waits at most.")
@click.option(
    "--sweep",
    "sweep_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A CSV or YAML file of parameters: one job per row, each column an environment "
    "variable; submitted as job arrays.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="With --sweep: how many tasks of each array may run at once.",
)
@click.option(
    "--max-array-size",
    type=click.IntRange(min=1),
    default=None,
    help="With --sweep: split into arrays of at most this many tasks (default: the "
    "scheduler's limit).",
)
@click.option("--force", is_flag=True, help="Submit even when the deadline looks infeasible.")
@click.option(
    "--on-risk",
    type=click.Choice(["warn", "raise"]),
    help="A deadline at risk: only say so, or raise the job a level  [default: the site's]",
)
@LEDGER_OPTION
@_site_options
def submit(
    job_file: str,
    *,
    wait_for_end: bool,
    timeout: float | None,
    sweep_file: str | None,
    limit: int | None,
    max_array_size: int | None,
    force: bool,
    on_risk: str | None,
    ledger_url: str | None,
    site: str,
    as_json: bool,
) -> None:
    """Submit JOB_FILE (YAML with JobSpec fields) and print the job id.

    On a site with budgets the job's worst case is checked against its account's (the
    ledger's usage, the queue's commitments): refused with the numbers, or held for budget.

    With --sweep, one job per row of the parameters file, packed into job arrays; one id per
    row is printed, in row order. On a site with budgets the whole sweep must fit, as a
    workflow must: refused whole, or held whole and released together.

    A job with a deadline is estimated first from the same ledger (likely, at risk,
    infeasible, with the numbers): infeasible is refused (exit 3) unless --force; it is then
    tracked for `hpcbridge deadlines` and `report sla`.
    """
    if sweep_file is None and (limit is not None or max_array_size is not None):
        raise click.UsageError("--limit and --max-array-size go with --sweep")
    with _open(site) as cluster:
        spec = _load(cluster, job_file)
        answer: dict[str, object]
        if sweep_file is not None:
            job_ids, held = _submit_sweep(
                cluster,
                spec,
                sweep_file,
                limit=limit,
                max_array_size=max_array_size,
                ledger_url=ledger_url,
            )
            answer = {"job_ids": job_ids, "held_for_budget": held}
        elif spec.deadline is not None or spec.begin_cheapest:
            job_id, held = _submit_planned(cluster, spec, ledger_url, force=force, on_risk=on_risk)
            job_ids = [job_id]
            answer = {"job_id": job_id, "held_for_budget": held}
        else:
            held = False
            if cluster.site.budgets.accounts:
                job_id, held = _submit_within_budget(cluster, spec, ledger_url)
            else:
                job_id = cluster.submit(spec)
            job_ids = [job_id]
            answer = {"job_id": job_id, "held_for_budget": held}
        _remember(cluster.site.name, job_ids)
        if not wait_for_end:
            if as_json:
                echo_json(answer)
            else:
                click.echo("\n".join(job_ids))
            return
        infos = cluster.wait(job_ids, timeout=timeout, retry=spec.retry is not None)
    _show(infos.values(), as_json)
    if any(info.state.value != "COMPLETED" for info in infos.values()):
        sys.exit(EXIT_JOB_FAILED)


def _submit_sweep(
    cluster: Cluster,
    spec: JobSpec,
    sweep_file: str,
    *,
    limit: int | None,
    max_array_size: int | None,
    ledger_url: str | None,
) -> tuple[list[str], bool]:
    """One job per row of the sweep file, through Cluster.submit_many; on a site with
    budgets the whole sweep is checked first (hpcbridge.policy.budget), warnings to stderr."""
    from hpcbridge.jobs.sweep_file import load_sweep, sweep_specs

    specs = sweep_specs(spec, load_sweep(sweep_file))
    if not cluster.site.budgets.accounts:
        return cluster.submit_many(specs, limit=limit, max_array_size=max_array_size), False
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.budget import submit_many_within_budget

    with Ledger.open(ledger_url, upgrade=False) as ledger:
        submitted = submit_many_within_budget(
            cluster,
            ledger,
            specs,
            name=f"sweep {os.path.basename(sweep_file)}",
            limit=limit,
            max_array_size=max_array_size,
        )
    for warning in submitted.warnings:
        click.echo(f"warning: {warning}", err=True)
    if submitted.held:
        click.echo(
            f"the sweep's {len(specs)} jobs are held until budget frees up "
            "(hpcbridge budget release)",
            err=True,
        )
    return submitted.job_ids, submitted.held


def _submit_planned(
    cluster: Cluster, spec: JobSpec, ledger_url: str | None, *, force: bool, on_risk: str | None
) -> tuple[str, bool]:
    """Pick the cheapest start (hpcbridge.policy.energy) for ``begin: cheapest``, check the
    deadline (hpcbridge.policy.feasibility), submit (through the budget check on a site with
    budgets), and track the deadline; the plan and the verdict go to stderr."""
    from datetime import UTC, datetime

    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.energy import plan_energy
    from hpcbridge.policy.feasibility import plan_job, track

    with Ledger.open(ledger_url) as ledger:
        started, _ = plan_energy(cluster, ledger, spec, notify=_say)
        planned, feasibility = plan_job(
            cluster, ledger, started, force=force, on_risk=on_risk, notify=_say
        )
    submitted_at = datetime.now(UTC)
    held = False
    if cluster.site.budgets.accounts:
        job_id, held = _submit_within_budget(cluster, planned, ledger_url)
    else:
        job_id = cluster.submit(planned)
    if feasibility is not None:
        with Ledger.open(ledger_url) as ledger:
            track(
                ledger,
                cluster.site.cluster_name or cluster.site.name,
                kind="job",
                ref=job_id,
                name=spec.name,
                client=cluster.site.prepare(spec).account,
                feasibility=feasibility,
                submitted_at=submitted_at,
            )
    return job_id, held


def _say(text: str) -> None:
    click.echo(text, err=True)


def _submit_within_budget(
    cluster: Cluster, spec: JobSpec, ledger_url: str | None
) -> tuple[str, bool]:
    """Submit through the budget check (hpcbridge.policy.budget); warnings go to stderr."""
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.budget import submit_within_budget

    with Ledger.open(ledger_url, upgrade=False) as ledger:
        submitted = submit_within_budget(cluster, ledger, spec)
    for warning in submitted.warnings:
        click.echo(f"warning: {warning}", err=True)
    if submitted.held:
        click.echo(
            f"job {submitted.job_id} is held until budget frees up (hpcbridge budget release)",
            err=True,
        )
    return submitted.job_id, submitted.held


@click.command()
@click.argument("job_ids", nargs=-1)
@_site_options
def status(job_ids: tuple[str, ...], site: str, as_json: bool) -> None:
    """Show jobs JOB_IDS (default: the jobs recently submitted with this command)."""
    with _open(site) as cluster:
        wanted = list(job_ids) or _remembered(cluster.site.name)
        if not wanted:
            click.echo("no jobs submitted from here yet; give job ids", err=True)
            return
        infos = cluster.backend.status(wanted) if not job_ids else cluster.status(wanted)
    _show([infos[job_id] for job_id in wanted if job_id in infos], as_json)


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--timeout", type=Seconds(), default=None, help="Seconds to wait at most.")
@_site_options
def wait(job_ids: tuple[str, ...], timeout: float | None, site: str, as_json: bool) -> None:
    """Wait until JOB_IDS have ended and show how they ended."""
    with _open(site) as cluster:
        infos = cluster.wait(list(job_ids), timeout=timeout)
    _show(infos.values(), as_json)
    if any(info.state.value != "COMPLETED" for info in infos.values()):
        sys.exit(EXIT_JOB_FAILED)


def _job_verb(verb: str, summary: str) -> click.Command:
    @click.command(name=verb, help=f"{summary} JOB_IDS.")
    @click.argument("job_ids", nargs=-1, required=True)
    @_site_options
    def command(job_ids: tuple[str, ...], site: str, as_json: bool) -> None:
        with _open(site) as cluster:
            getattr(cluster, verb)(list(job_ids))
        if as_json:
            echo_json({verb: list(job_ids)})

    return command


@click.group()
def site() -> None:
    """Inspect site configurations."""


@site.command("check")
@_site_options
def site_check(site: str, as_json: bool) -> None:
    """Validate the site config and reach its scheduler."""
    with _open(site) as cluster:
        answer = cluster.check()
        config = cluster.site
    if as_json:
        echo_json({"site": config.name, "scheduler": config.scheduler, "answer": answer})
    else:
        click.echo(f"site {config.name}: config valid, {config.scheduler} answered: {answer}")


@site.command("list")
def site_list() -> None:
    """List the site names that --site accepts."""
    from hpcbridge.resources import data_dir
    from hpcbridge.site import user_site_dir

    for folder in (user_site_dir(), data_dir("site_configs")):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            click.echo(f"{path.stem}\t{path}")


def _show(infos: Iterable[JobInfo], as_json: bool) -> None:
    rows = list(infos)
    if as_json:
        echo_json([info.model_dump(mode="json") for info in rows])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for heading in ("JOBID", "NAME", "STATE", "EXIT", "ELAPSED", "NODES", "REASON"):
        table.add_column(heading)
    for info in rows:
        elapsed = info.elapsed_seconds
        table.add_row(
            info.job_id,
            info.name or "",
            info.state.value,
            "" if info.exit_code is None else str(info.exit_code),
            "" if elapsed is None else f"{elapsed:.1f}s",
            info.nodes or "",
            info.reason or "",
        )
    Console(soft_wrap=True).print(table)


def _history_file(site_name: str) -> Path:
    from pathlib import Path

    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "hpcbridge" / f"{site_name}.jobs"


def _remember(site_name: str, job_ids: list[str]) -> None:
    """Keep the ids this command submitted so a bare ``status`` can show them."""
    path = _history_file(site_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as history:
        history.writelines(f"{job_id}\n" for job_id in job_ids)


def _remembered(site_name: str, limit: int = 50) -> list[str]:
    path = _history_file(site_name)
    if not path.is_file():
        return []
    return list(dict.fromkeys(path.read_text().split()))[-limit:]


COMMANDS = (
    render,
    submit,
    status,
    wait,
    _job_verb("cancel", "Cancel"),
    _job_verb("hold", "Hold (keep from starting)"),
    _job_verb("release", "Release held"),
    _job_verb("requeue", "Requeue (stop and run again)"),
    site,
)
