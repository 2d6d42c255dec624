"""Can a job, or a workflow's stages, finish before a deadline? An estimate before submitting.

Each stage's finish is its start (now, or when the last stage it waits on finishes) plus its
queue wait plus its run time, along the workflow's critical path:

- run time: the ledger's run-time predictor (the user's recent runs of the same job, else
  their habit of over-asking, capped at the request); its 80% upper bound is the longest of
  the last runs of the same job when there are enough of them, else the request itself,
  which the scheduler enforces;
- queue wait: for a stage that can start at once on Slurm, the scheduler's own estimate
  (``sbatch --test-only``); otherwise, and as the upper bound, the waits the ledger saw in
  the last 30 days for the same partition and a similar size (median and 80th percentile):
  :mod:`hpcbridge.policy.queue_wait`.

The verdict: ``infeasible`` when even with no queue wait the predicted run misses, or (on
Slurm) a stage's time limit cannot end before the deadline from its expected start, since
Slurm cancels such a job itself; ``at risk`` when the 80% upper bound, with the site's
safety margin, misses; else ``likely``. At risk, the next priority level up is suggested.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hpcbridge.errors import ForecastError
from hpcbridge.jobs.units import format_signed_duration as _clock
from hpcbridge.jobs.units import format_utc_minute as _at
from hpcbridge.policy.queue_wait import cores, ledger_wait, recent_waits, slurm_estimate, test_only

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.forecast.runtime import RuntimeHistory
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.ledger.store import Ledger

_ENOUGH_RUNS = 3
RUNNING = "running"  # a stage's wait basis once it has started


@dataclass(frozen=True)
class StageEstimate:
    """One stage's expected wait and run, each with its 80% upper bound and where it came from."""

    name: str
    wait_s: int
    wait_high_s: int
    wait_basis: str
    run_s: int
    run_high_s: int
    run_basis: str
    walltime_s: int | None
    start: datetime
    finish: datetime
    finish_high: datetime
    level: str | None = None  # the priority level it would be submitted at


@dataclass(frozen=True)
class Feasibility:
    """The verdict on a deadline, with the numbers behind it."""

    verdict: str  # "likely", "at risk", "infeasible"
    deadline: datetime
    finish: datetime  # expected
    finish_high: datetime  # 80% upper bound
    margin_s: int
    critical_path: list[str]
    stages: list[StageEstimate]
    reason: str
    suggested_level: str | None = None
    problems: list[str] = field(default_factory=list)


def check_deadline(
    cluster: Cluster,
    ledger: Ledger,
    stages: Sequence[JobSpec],
    parents: Mapping[str, Sequence[str]],
    deadline: datetime,
    *,
    started: Mapping[str, datetime] | None = None,
    now: datetime | None = None,
) -> Feasibility:
    """The verdict for ``stages`` (prepared specs, parents before children; ``parents``: a
    stage's name -> the stages it waits on, among ``stages``) finishing by ``deadline``;
    ``started``: stages already running, with their start (their run is counted from it)."""
    from hpcbridge.forecast.advice import runtime_history
    from hpcbridge.policy.budget import submitting_user

    moment = now or datetime.now(UTC)
    deadline = deadline.astimezone(UTC)  # a time without a zone is local, as sbatch reads it
    user = submitting_user(cluster.site)
    history = runtime_history(ledger, user=user, as_of=moment)
    cluster_name = cluster.site.cluster_name or cluster.site.name
    waits = recent_waits(ledger, cluster_name, moment)
    slurm_estimates: dict[tuple[str, ...], tuple[int, str, str | None]] = {}
    ledger_estimates: dict[tuple[str | None, int], tuple[int, int, str]] = {}
    estimates: dict[str, StageEstimate] = {}
    problems: list[str] = []
    for spec in stages:
        waits_on = [estimates[name] for name in parents.get(spec.name, ())]
        earliest = max(moment, spec.begin.astimezone(UTC)) if spec.begin else moment
        ready = max([earliest] + [stage.finish for stage in waits_on])
        ready_high = max([earliest] + [stage.finish_high for stage in waits_on])
        run, run_high, run_basis = _run_time(history, user, spec)
        if spec.name in (started or {}):
            began = (started or {})[spec.name]
            estimates[spec.name] = StageEstimate(
                spec.name,
                0,
                0,
                RUNNING,
                run,
                run_high,
                run_basis,
                spec.resources.walltime,
                began,
                max(moment, began + timedelta(seconds=run)),
                max(moment, began + timedelta(seconds=run_high)),
                spec.priority,
            )
            continue
        size = (spec.partition, cores(spec))
        if size not in ledger_estimates:
            ledger_estimates[size] = ledger_wait(waits, *size)
        wait, wait_high, wait_basis = ledger_estimates[size]
        if not waits_on and cluster.site.scheduler == "slurm":
            probe = test_only(spec)  # jobs asking for the same get the same answer
            if tuple(probe) not in slurm_estimates:
                slurm_estimates[tuple(probe)] = slurm_estimate(
                    cluster, probe, moment, (wait, wait_basis)
                )
            wait, wait_basis, refusal = slurm_estimates[tuple(probe)]
            wait_high = max(wait_high, wait)
            if refusal:
                problems.append(f"stage {spec.name}: Slurm cannot run it: {refusal}")
        start = ready + timedelta(seconds=wait)
        estimates[spec.name] = StageEstimate(
            spec.name,
            wait,
            wait_high,
            wait_basis,
            run,
            run_high,
            run_basis,
            spec.resources.walltime,
            start,
            start + timedelta(seconds=run),
            ready_high + timedelta(seconds=wait_high + run_high),
            spec.priority,
        )
    return _verdict(
        cluster,
        list(estimates.values()),
        parents=parents,
        deadline=deadline,
        now=moment,
        problems=problems,
    )


def _verdict(
    cluster: Cluster,
    estimates: list[StageEstimate],
    *,
    parents: Mapping[str, Sequence[str]],
    deadline: datetime,
    now: datetime,
    problems: list[str],
) -> Feasibility:
    site = cluster.site
    by_name = {stage.name: stage for stage in estimates}
    last = max(estimates, key=lambda stage: stage.finish_high)
    path = _critical_path(last.name, by_name, parents)
    finish = max(stage.finish for stage in estimates)
    finish_high = last.finish_high
    margin = math.ceil(site.deadlines.margin * max(0.0, (deadline - now).total_seconds()))
    run_only = _earliest_finish(by_name, parents, now)
    if run_only > deadline:
        problems.append(
            f"even with no queue wait the predicted run ends {_at(run_only)}, after the deadline"
        )
    if site.scheduler == "slurm":
        problems += [
            _dropped_by_slurm(stage, deadline)
            for stage in estimates
            if stage.walltime_s
            and stage.wait_basis != RUNNING  # Slurm drops only jobs that have not started
            and stage.start + timedelta(seconds=stage.walltime_s) > deadline
        ]
    numbers = (
        f"expected finish {_at(finish)}, 80% bound {_at(finish_high)}, deadline {_at(deadline)}, "
        f"margin {_clock(margin)}"
    )
    if problems:
        verdict, reason, level = "infeasible", f"{numbers}; " + "; ".join(problems), None
    elif finish_high + timedelta(seconds=margin) > deadline:
        level = _level_up(cluster, estimates)
        advice = f"; a higher level may help: {level}" if level else ""
        verdict, reason = "at risk", f"{numbers}: the bound with the margin misses{advice}"
    else:
        verdict, reason, level = "likely", f"{numbers}: fits with the margin", None
    return Feasibility(
        verdict, deadline, finish, finish_high, margin, path, estimates, reason, level, problems
    )


def _dropped_by_slurm(stage: StageEstimate, deadline: datetime) -> str:
    """Why Slurm would cancel the stage (its --deadline), and what would let it run."""
    room = (deadline - stage.start).total_seconds()
    fix = (
        f"ask for at most {_clock(room)}"
        if room > 0
        else "it is expected to start only after the deadline"
    )
    return (
        f"stage {stage.name}: its time limit {_clock(stage.walltime_s)} cannot end before the "
        f"deadline from its expected start {_at(stage.start)}, and Slurm cancels such a job "
        f"({fix})"
    )


def _critical_path(
    last: str, by_name: Mapping[str, StageEstimate], parents: Mapping[str, Sequence[str]]
) -> list[str]:
    """From the first stage to ``last``, each step the parent that finishes last."""
    path = [last]
    while parents.get(path[-1]):
        path.append(max(parents[path[-1]], key=lambda name: by_name[name].finish_high))
    return path[::-1]


def _earliest_finish(
    by_name: Mapping[str, StageEstimate], parents: Mapping[str, Sequence[str]], now: datetime
) -> datetime:
    """When the last stage would end with no queue wait at all, at the predicted run times."""
    done: dict[str, datetime] = {}
    for name, stage in by_name.items():  # parents come first
        if stage.wait_basis == RUNNING:
            done[name] = stage.finish
            continue
        ready = max([now] + [done[parent] for parent in parents.get(name, ())])
        done[name] = ready + timedelta(seconds=stage.run_s)
    return max(done.values())


def _level_up(cluster: Cluster, estimates: Sequence[StageEstimate]) -> str | None:
    """The level above the highest the stages ask for (else the site's default, else its
    middle one), if the site has one."""
    levels = list(cluster.site.priorities.levels)
    if not levels:
        return None
    asked = [levels.index(stage.level) for stage in estimates if stage.level in levels]
    fallback = cluster.site.priorities.default or levels[(len(levels) - 1) // 2]
    index = max(asked, default=levels.index(fallback))
    return levels[index + 1] if index + 1 < len(levels) else None


def _run_time(history: RuntimeHistory, user: str, spec: JobSpec) -> tuple[int, int, str]:
    """(predicted, 80% upper bound, basis) of the stage's run time."""
    request = spec.resources.walltime
    try:
        prediction = history.predict(user, spec.name, request)
    except ForecastError:
        raise ForecastError(
            f"stage {spec.name}: no walltime and no finished runs to predict its run time "
            "from; give it resources.walltime"
        ) from None
    runs = history.recent_runs(user, spec.name, request)
    if len(runs) >= _ENOUGH_RUNS:
        high = min(max(runs), request or max(runs))
        basis = f"{prediction.basis}, bound: longest of the last {len(runs)} runs"
    else:
        high = request or prediction.seconds
        basis = f"{prediction.basis}, bound: the requested walltime"
    return prediction.seconds, max(high, prediction.seconds), basis


def plan_job(
    cluster: Cluster,
    ledger: Ledger,
    spec: JobSpec,
    *,
    force: bool = False,
    on_risk: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[JobSpec, Feasibility | None]:
    """Check a job's deadline before submission, as a workflow's is: refused when infeasible
    (unless ``force``), raised a level when at risk with ``on_risk`` (default: the site's)
    ``raise``. Without a deadline, the job as it is."""
    prepared = cluster.site.prepare(spec)
    if prepared.deadline is None:
        return spec, None
    feasibility = check_deadline(cluster, ledger, [prepared], {}, prepared.deadline)
    level, line = decide(
        feasibility,
        f"job {spec.name}",
        force=force,
        on_risk=on_risk or cluster.site.deadlines.on_risk,
    )
    if notify is not None:
        notify(line)
    return (spec if level is None else spec.model_copy(update={"priority": level})), feasibility


def decide(
    feasibility: Feasibility, what: str, *, force: bool, on_risk: str
) -> tuple[str | None, str]:
    """What to do with a verdict before submitting ``what``: (the level to raise it to, or
    None; the line to tell the user). Infeasible is refused unless forced."""
    from hpcbridge.errors import DeadlineInfeasible

    line = f"deadline of {what}: {feasibility.verdict}: {feasibility.reason}"
    if feasibility.verdict == "infeasible" and not force:
        raise DeadlineInfeasible(f"{line}; submit with --force to run it anyway")
    level = feasibility.suggested_level
    if feasibility.verdict == "at risk" and level and on_risk == "raise":
        return level, f"{line}; submitted at {level}"
    return None, line


def track(
    ledger: Ledger,
    cluster: str,
    *,
    kind: str,
    ref: str,
    name: str,
    client: str | None,
    feasibility: Feasibility,
    submitted_at: datetime,
) -> None:
    """Keep a submitted job or workflow with a deadline for ``hpcbridge deadlines`` and the
    SLA report."""
    from sqlalchemy import insert

    from hpcbridge.ledger.schema import TrackedDeadline

    row = {
        "cluster": cluster,
        "kind": kind,
        "ref": ref,
        "name": name,
        "client": client,
        "deadline": feasibility.deadline,
        "submitted_at": submitted_at,
        "verdict": feasibility.verdict,
        "expected_finish": feasibility.finish,
    }
    with ledger.transaction() as connection:
        connection.execute(insert(TrackedDeadline), row)
