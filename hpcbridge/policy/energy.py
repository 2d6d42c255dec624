"""Off-peak starts: ``begin: cheapest`` picks the start that makes a job's energy cost least
under the site's tariff, and still lets it end before its deadline; Slurm and PBS hold it
with their own ``--begin``/``-a``.

A job's energy is estimated (labelled so): its cores x ``watts_per_core`` plus its GPUs x
``watts_per_gpu``, over its predicted run time (the ledger's run-time predictor). The cost of
a start is that power priced hour by hour as the run crosses the tariff's windows. The cost
only changes slope where the run's start or end crosses a window edge, so the cheapest start
is among: now, a window edge, or a window edge minus the run time; each is priced exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hpcbridge.errors import SpecError
from hpcbridge.reports.energy import Tariff

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from hpcbridge.cluster import Cluster
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import EnergyOptions

HORIZON = timedelta(days=7)  # how far ahead a start is looked for without a deadline


@dataclass(frozen=True)
class EnergyPlan:
    """The chosen start and what it costs, beside starting now."""

    start: datetime
    run_s: int
    power_w: float
    kwh: float
    cost: float
    cost_now: float
    currency: str
    estimated: bool = True  # from the power figures, not a meter

    def describe(self, what: str) -> str:
        """One line for the user."""
        return (
            f"{what} begins {self.start.astimezone(UTC):%Y-%m-%d %H:%M} UTC, the cheapest start: "
            f"{self.kwh:.2f} kWh, {self.cost:.2f} {self.currency} "
            f"(starting now: {self.cost_now:.2f}; estimated from {self.power_w:.0f} W over "
            f"{self.run_s // 60} min)"
        )


def cheapest_starts(
    options: EnergyOptions, *, now: datetime, jobs: Sequence[tuple[int, float, datetime | None]]
) -> list[EnergyPlan]:
    """:func:`cheapest_start` of many jobs (run seconds, watts, latest start) at once: one
    tariff table for all, and jobs of the same shape (a campaign's usually are) priced once."""
    lasts = [latest or now + HORIZON for _, _, latest in jobs]
    longest = max((run_s for run_s, _, _ in jobs), default=0)
    tariff = Tariff(options, now, max(lasts, default=now) + timedelta(seconds=longest))
    plans: dict[tuple[int, float, datetime], EnergyPlan] = {}
    for (run_s, power_w, _), last in zip(jobs, lasts, strict=True):
        key = (run_s, power_w, last)
        if key not in plans:
            plans[key] = cheapest_start(
                options, now=now, run_s=run_s, power_w=power_w, latest_start=last, tariff=tariff
            )
    return [
        plans[(run_s, power_w, last)] for (run_s, power_w, _), last in zip(jobs, lasts, strict=True)
    ]


def cheapest_start(
    options: EnergyOptions,
    *,
    now: datetime,
    run_s: int,
    power_w: float,
    latest_start: datetime | None = None,
    tariff: Tariff | None = None,
) -> EnergyPlan:
    """The earliest of the cheapest starts from ``now`` to ``latest_start`` (default: a week);
    ``tariff``: a table already covering that span and the run after it."""
    last = latest_start or now + HORIZON
    if last < now:
        raise SpecError(
            f"begin: cheapest: no start from now lets the job end before its deadline "
            f"(it should have started by {last.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        )
    tariff = tariff or Tariff(options, now, last + timedelta(seconds=run_s))
    edges = [datetime.fromtimestamp(edge, UTC) for edge in tariff.edges]
    candidates = {now, last}
    candidates |= {edge for edge in edges if now <= edge <= last}
    shifted = (edge - timedelta(seconds=run_s) for edge in edges)
    candidates |= {start for start in shifted if now <= start <= last}
    costs = {start: tariff.cost(start, run_s, power_w) for start in candidates}
    best = min(sorted(costs), key=lambda start: round(costs[start], 9))
    kwh = power_w * run_s / 1000 / 3600
    return EnergyPlan(
        best, run_s, power_w, kwh, costs[best], costs[now], options.currency, estimated=True
    )


def plan_energy(
    cluster: Cluster,
    ledger: Ledger,
    spec: JobSpec,
    *,
    now: datetime | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[JobSpec, EnergyPlan | None]:
    """A spec asking ``begin: cheapest`` with ``begin`` set to the cheapest start; other specs
    as they are."""
    from hpcbridge.forecast.advice import runtime_history
    from hpcbridge.policy.budget import submitting_user

    if not spec.begin_cheapest:
        return spec, None
    options = cluster.site.energy
    if not options.windows:
        raise SpecError(
            f"begin: cheapest: site {cluster.site.name} gives no energy tariff; add "
            "energy.windows (and energy.price) to its config, or give begin a time"
        )
    prepared = cluster.site.prepare(spec)
    moment = (now or datetime.now(UTC)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    user = submitting_user(cluster.site)
    predicted = runtime_history(ledger, user=user).predict(
        user, spec.name, prepared.resources.walltime
    )
    resources = prepared.resources
    cores = resources.nodes * resources.ntasks * resources.cpus_per_task
    power = cores * options.watts_per_core + resources.gpus * options.watts_per_gpu
    latest = None
    if prepared.deadline is not None and resources.walltime:
        latest = prepared.deadline.astimezone(UTC) - timedelta(seconds=resources.walltime)
    plan = cheapest_start(
        options, now=moment, run_s=predicted.seconds, power_w=power, latest_start=latest
    )
    if notify is not None:
        notify(plan.describe(f"job {spec.name}"))
    return spec.model_copy(update={"begin": plan.start, "begin_cheapest": False}), plan
