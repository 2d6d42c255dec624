"""``hpcbridge forecast ...`` and ``hpcbridge advise``: usage forecasts, burn-down, walltime advice.

numpy and SQLAlchemy load inside each command, never at start-up; a ledger with too little
history exits 9 (ForecastError).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click

from hpcbridge.cli.options import (
    JSON_OPTION,
    LEDGER_OPTION,
    MAX_BAD_LINES_OPTION,
    SITE_OPTION,
    UtcDate,
    echo_json,
    reports_errors,
    terminal_progress,
    warn_bad_lines,
)

if TYPE_CHECKING:
    from hpcbridge.forecast.campaign import CampaignForecast, PlannedJob
    from hpcbridge.forecast.scores import Evaluation
    from hpcbridge.site import SiteConfig
    from hpcbridge.workflows.model import Workflow

_AS_OF = click.option(
    "--as-of",
    type=UtcDate(),
    help="Forecast as if it were this moment (UTC); nothing later is used.  [default: now]",
)


@click.group()
def forecast() -> None:
    """Forecast usage, allocation burn-down, and score the forecasts on a trace."""


@forecast.command("usage")
@click.option("--account", help="Forecast this account (project or grant).")
@click.option("--user", help="Forecast this user.")
@click.option("--cluster", help="Only this cluster.  [default: every cluster in the ledger]")
@click.option("--months", type=click.IntRange(1, 12), default=3, show_default=True)
@_AS_OF
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def forecast_usage_command(
    *,
    account: str | None,
    user: str | None,
    cluster: str | None,
    months: int,
    as_of: datetime | None,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Core- and GPU-hours of the next calendar months, with 80% prediction intervals.

    Without --account or --user: the whole machine. The last column names the forecast used:
    combined (a smoothed level and last month, averaged), or last month or the mean of the
    last 3 months where that did better on the months before.
    """
    from hpcbridge.forecast.usage import forecast_usage
    from hpcbridge.ledger.store import Ledger

    if account and user:
        raise click.UsageError("give --account or --user, not both")
    with Ledger.open(ledger_url, upgrade=False) as opened:
        result = forecast_usage(
            opened,
            account=account,
            user=user,
            months=months,
            as_of=as_of,
            cluster=cluster,
        )
    if as_json:
        echo_json([_plain(asdict(month)) for month in result])
        return
    click.echo(f"{'month':8} {'core-hours':>12} {'80% interval':>25} {'GPU-hours':>10}")
    for month in result:
        interval = f"{month.core_low:,.0f} - {month.core_high:,.0f}"
        click.echo(
            f"{month.month:%Y-%m}  {month.core_hours:>12,.0f} {interval:>25} "
            f"{month.gpu_hours:>10,.0f}  ({month.method})"
        )


@forecast.command("budget")
@click.argument("account")
@_AS_OF
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def forecast_budget(
    account: str, as_of: datetime | None, ledger_url: str | None, as_json: bool
) -> None:
    """When ACCOUNT's allocation runs out, at its current and its forecast burn rate."""
    from hpcbridge.forecast.usage import budget_burndown
    from hpcbridge.ledger.store import Ledger

    with Ledger.open(ledger_url, upgrade=False) as opened:
        burn = budget_burndown(opened, account, as_of=as_of)
    if as_json:
        echo_json(_plain(asdict(burn)))
        return
    if burn.granted_core_hours is None:
        click.echo(f"{account}: no allocation covers {burn.as_of:%Y-%m-%d}")
    else:
        click.echo(
            f"{account}: {burn.used_core_hours:,.0f} of {burn.granted_core_hours:,.0f} "
            f"core-hours used ({burn.allocation_starts:%Y-%m-%d} to "
            f"{burn.allocation_ends:%Y-%m-%d})"
        )
    click.echo(f"burn over the last 30 days: {burn.daily_burn_current:,.1f} core-hours/day")
    if burn.granted_core_hours is not None:
        click.echo(f"runs out at the current rate: {_day(burn.exhaustion_current)}")
        click.echo(
            f"runs out at the forecast rate: {_day(burn.exhaustion_forecast)} "
            f"(80%: {_day(burn.exhaustion_early)} to {_day(burn.exhaustion_late)})"
        )


@forecast.command("evaluate")
@click.argument(
    "trace_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False)
)
@MAX_BAD_LINES_OPTION
@JSON_OPTION
@reports_errors
def forecast_evaluate(trace_files: tuple[str, ...], max_bad_lines: int, as_json: bool) -> None:
    """Score the forecasts and the runtime predictor, with their baselines, on SWF traces.

    Each TRACE is scored on its own: rolling origin over whole months after a 3-month
    warm-up; nothing after an origin is visible to the forecast made there. Prints every
    method and baseline per trace, then which targets each trace meets. Malformed lines are
    skipped and listed with their line number and field.
    """
    results = [_evaluate_trace(path, max_bad_lines, as_json) for path in trace_files]
    if as_json:
        echo_json(_plain({"traces": [asdict(r) for r in results], "summary": _summary(results)}))
        return
    for result in results:
        _print_evaluation(result)
    click.echo("targets met per trace:")
    for result in results:
        met = [t.name for t in result.targets if t.met]
        missed = [t.name for t in result.targets if not t.met]
        click.echo(
            f"  {result.trace}: {len(met)} of {len(result.targets)} "
            f"(read {result.read_seconds:.1f} s, scored {result.seconds:.1f} s)"
        )
        click.echo(f"    met: {', '.join(met) or 'none'}")
        click.echo(f"    not met: {', '.join(missed) or 'none'}")


def _evaluate_trace(trace_file: str, max_bad_lines: int, quiet: bool) -> Evaluation:
    """Read and score one trace, its malformed lines listed on stderr as they are skipped."""
    from hpcbridge.forecast.evaluate import evaluate, read_trace
    from hpcbridge.ledger.sources.swf import SwfTrace

    trace = SwfTrace(trace_file, max_bad_lines=max_bad_lines)
    with terminal_progress(quiet) as bar:
        task = None if bar is None else bar.add_task(f"reading {trace_file}", total=None)
        started = time.perf_counter()
        jobs = read_trace(
            trace,
            progress=None
            if bar is None or task is None
            else lambda count: bar.update(task, completed=count),
        )
        read_seconds = time.perf_counter() - started
        if bar is not None and task is not None:
            bar.update(task, description=f"scoring {trace_file}")
        result = evaluate(jobs, trace=trace_file)
    warn_bad_lines(trace, "scored")
    result.read_seconds = read_seconds
    return result


def _summary(results: list[Evaluation]) -> list[dict[str, Any]]:
    """Per trace: how many targets it meets, which, and how long reading and scoring took."""
    return [
        {
            "trace": result.trace,
            "met": sum(t.met for t in result.targets),
            "targets": len(result.targets),
            "met_names": [t.name for t in result.targets if t.met],
            "read_seconds": result.read_seconds,
            "scored_seconds": result.seconds,
        }
        for result in results
    ]


def _print_evaluation(result: Evaluation) -> None:
    from hpcbridge.forecast.targets import group_wins

    click.echo(f"{result.trace}: months {result.months[0]} .. {result.months[-1]}")
    header = f"{'level':8} {'method':20} {'h':>2} {'n':>6} {'medAPE':>7} {'±10%':>5} {'wErr':>5}"
    click.echo(f"{header} {'cov80':>6} {'under':>6} {'2x over':>7}")
    for score in result.usage + result.runtime:
        click.echo(
            f"{score.level:8} {score.method:20} {score.horizon:>2} {score.count:>6} "
            f"{score.median_ape:>7.1%} {score.within_10:>5.0%} {score.weighted_error:>5.2f} "
            f"{_pct(score.coverage):>6} {_pct(score.under_predicted):>6} "
            f"{_pct(score.over_predicted):>7}"
        )
    for level in ("account", "user"):
        wins, ties, groups = group_wins(result, level)
        click.echo(
            f"per {level}: the model's median APE (h=1) beats last month's in {wins} of "
            f"{groups} scored {level}s, ties in {ties}"
        )
    for key, used in result.chosen.items():
        methods = ", ".join(f"{name} {origins}" for name, origins in used.items())
        click.echo(f"model at each origin, {key}: {methods}")
    click.echo("targets:")
    for target in result.targets:
        verdict = "met" if target.met else "NOT met"
        click.echo(f"  {target.name}: {target.goal}, measured {target.measured} ({verdict})")
    click.echo("")


@forecast.command("workflow")
@click.argument("workflow_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--sweep",
    "sweep_file",
    type=click.Path(exists=True, dir_okay=False),
    help="With a job file: one job per row of this CSV or YAML file, as submit --sweep.",
)
@click.option("--user", help="Whose jobs these will be.  [default: the current user]")
@_AS_OF
@SITE_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def forecast_workflow(
    *,
    workflow_file: str,
    sweep_file: str | None,
    user: str | None,
    as_of: datetime | None,
    site: str,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Core- and GPU-hours a planned workflow or job (an array, a --sweep) will use, with 80%
    intervals, per stage and in total: for grant requests and capacity planning.

    Run times are the run-time predictor's (as for advise), intervals from its own errors
    replayed over the ledger's past runs. Walltimes are those the jobs would get on --site.
    Nothing is submitted.
    """
    import getpass

    from hpcbridge.forecast.campaign import forecast_campaign
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import SiteConfig

    who = user or os.environ.get("USER") or getpass.getuser()
    plan = _plan(workflow_file, sweep_file, SiteConfig.load(site), who)
    with Ledger.open(ledger_url, upgrade=False) as opened:
        result = forecast_campaign(opened, plan, as_of=as_of)
    if as_json:
        echo_json(_plain(asdict(result)))
    else:
        _print_campaign(result)


def _plan(file: str, sweep_file: str | None, config: SiteConfig, user: str) -> list[PlannedJob]:
    """The planned jobs of a workflow file (its stages; a segment chain's or a preview's
    too) or a job file (its array's tasks times the sweep's rows), prepared for the site."""
    from hpcbridge.cli.deadlines import is_workflow_file
    from hpcbridge.errors import SpecError
    from hpcbridge.forecast.campaign import PlannedJob
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.jobs.sweep_file import load_sweep
    from hpcbridge.policy.hardware import place
    from hpcbridge.workflows.segments import needs_segments, workflow_from_file

    rows = 1
    workflow: Workflow | None = None
    if is_workflow_file(file):
        if sweep_file:
            raise SpecError(f"--sweep: {file} is a workflow; a sweep takes one job file")
        workflow = workflow_from_file(file, config)
    else:
        spec = JobSpec.from_yaml(file)
        rows = len(load_sweep(sweep_file)) if sweep_file else 1
        if needs_segments(spec) or spec.preview:
            workflow = workflow_from_file(file, config)
    stages = (
        [(stage.name, workflow.job_name(stage.name), stage) for stage in workflow.stages]
        if workflow is not None
        else [(spec.name, spec.name, place(config, spec))]
    )
    plan = []
    for label, job_name, stage in stages:
        resources = config.prepare(stage).resources
        # Counted as the budget counts a job's worst case (hpcbridge.policy.budget): GPUs
        # per node on Slurm, in all on PBS.
        gpus = resources.gpus * (resources.nodes if config.scheduler == "slurm" else 1)
        plan.append(
            PlannedJob(
                label=label,
                user=user,
                name=job_name,
                request_s=resources.walltime,
                cpus=resources.ntasks * resources.cpus_per_task,
                gpus=gpus,
                count=(len(stage.array_indices()) or 1) * rows,
            )
        )
    return plan


def _print_campaign(result: CampaignForecast) -> None:
    from hpcbridge.jobs.units import format_duration

    click.echo(
        f"{'stage':20} {'jobs':>6} {'cores':>5} {'GPUs':>4} {'run time':>9} "
        f"{'core-hours':>10} {'80% interval':>21} {'GPU-hours':>9} {'80% interval':>19}  basis"
    )
    for stage in result.stages:
        click.echo(
            f"{stage.label:20} {stage.count:>6} {stage.cpus:>5} {stage.gpus:>4} "
            f"{format_duration(stage.predicted_s):>9} {_hours_and_interval(stage)}  "
            f"{stage.basis}; {stage.errors}"
        )
    click.echo(f"{'total':20} {'':>6} {'':>5} {'':>4} {'':>9} {_hours_and_interval(result)}")
    click.echo(f"from {result.replayed} past runs replayed, as of {result.as_of:%Y-%m-%d %H:%M}")
    if result.note:
        click.echo(f"note: {result.note}")


def _hours_and_interval(row: Any) -> str:
    core = f"{row.core_low:,.1f} - {row.core_high:,.1f}"
    gpu = f"{row.gpu_low:,.1f} - {row.gpu_high:,.1f}"
    return f"{row.core_hours:>10,.1f} {core:>21} {row.gpu_hours:>9,.1f} {gpu:>19}"


@click.command("advise")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--user", help="Whose history to use.  [default: the current user]")
@SITE_OPTION
@LEDGER_OPTION
@JSON_OPTION
@reports_errors
def advise(
    job_file: str, user: str | None, site: str, ledger_url: str | None, as_json: bool
) -> None:
    """Predict JOB_FILE's run time from your finished jobs and advise on its walltime.

    The request advised on is the walltime JOB_FILE would be submitted with on --site: its
    own, else the default of its partition there.
    """
    import getpass

    from hpcbridge.forecast.advice import advise_walltime
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.hardware import place
    from hpcbridge.site import SiteConfig

    config = SiteConfig.load(site)
    spec = config.prepare(place(config, JobSpec.from_yaml(job_file)))
    who = user or os.environ.get("USER") or getpass.getuser()
    with Ledger.open(ledger_url, upgrade=False) as opened:
        advice = advise_walltime(
            opened,
            user=who,
            name=spec.name,
            request_s=spec.resources.walltime,
            cpus=spec.resources.ntasks * spec.resources.cpus_per_task,
        )
    if as_json:
        echo_json(_plain(asdict(advice)))
    else:
        click.echo(advice.text)


def _day(day: date | None) -> str:
    return "not before the allocation ends" if day is None else f"{day:%Y-%m-%d}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _plain(value: Any) -> Any:
    """Dates as ISO strings, infinities as null: what JSON can hold."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
