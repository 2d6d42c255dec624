"""What jobs' energy was and cost under the site's tariff, estimated (and labelled so) from
the cores and GPUs they held, the site's watts per core and per GPU, and the hours they ran;
and the tariff arithmetic that ``begin: cheapest`` (hpcbridge.policy.energy) shares.

The ledger holds no meter readings: the test cluster has no ``acct_gather_energy`` plugin, so
Slurm's ConsumedEnergy is empty there and a measured figure could not be tested. Every
number here is an estimate and every format says so.
"""

from __future__ import annotations

import csv
import io
import json
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.site import EnergyOptions

FORMATS = ("markdown", "csv", "json")
SOURCE = "estimated"


@dataclass(frozen=True)
class AccountEnergy:
    """One account's runs in the period: what they held, and the energy and cost estimated."""

    account: str
    core_hours: float
    gpu_hours: float
    kwh: float
    cost: float
    source: str = SOURCE


@dataclass(frozen=True)
class EnergyReport:
    """The period, the cluster, the tariff's currency, one row per account."""

    start: datetime
    end: datetime
    cluster: str | None
    currency: str
    accounts: list[AccountEnergy] = field(default_factory=list)


def energy_report(
    ledger: Ledger,
    options: EnergyOptions,
    start: datetime,
    end: datetime,
    *,
    cluster: str | None = None,
    now: datetime | None = None,
) -> EnergyReport:
    """Each account's runs in [start, end) (running ones up to ``now``), clipped to it."""
    from sqlalchemy import select

    from hpcbridge.ledger.schema import Account, JobAttempt
    from hpcbridge.ledger.schema import Cluster as ClusterRow

    moment = now or datetime.now(UTC)
    query = (
        select(Account.name, JobAttempt.start_at, JobAttempt.end_at, JobAttempt.alloc_cpus)
        .add_columns(JobAttempt.alloc_gpus)
        .join(ClusterRow, ClusterRow.id == JobAttempt.cluster_id)
        .outerjoin(Account, Account.id == JobAttempt.account_id)
        .where(JobAttempt.start_at.is_not(None), JobAttempt.start_at < end)
        .where((JobAttempt.end_at.is_(None)) | (JobAttempt.end_at > start))
    )
    if cluster is not None:
        query = query.where(ClusterRow.name == cluster)
    totals: dict[str, list[float]] = {}
    with ledger.transaction(read_only=True) as connection:
        for account, began, ended, cpus, gpus in connection.execute(query):
            left = max(began, start)
            right = min(ended or moment, end)
            seconds = (right - left).total_seconds()
            if seconds <= 0:
                continue
            power = (cpus or 0) * options.watts_per_core + (gpus or 0) * options.watts_per_gpu
            row = totals.setdefault(account or "", [0.0, 0.0, 0.0, 0.0])
            row[0] += (cpus or 0) * seconds / 3600
            row[1] += (gpus or 0) * seconds / 3600
            row[2] += power * seconds / 3_600_000
            row[3] += run_cost(options, left, int(seconds), power)
    rows = [
        AccountEnergy(name, cores, gpus, kwh, cost)
        for name, (cores, gpus, kwh, cost) in sorted(totals.items())
    ]
    return EnergyReport(start, end, cluster, options.currency, rows)


def render(report: EnergyReport, output_format: str) -> str:
    """The report in one of FORMATS; each says the figures are estimated."""
    if output_format == "json":
        document = {
            "from": report.start.isoformat(),
            "to": report.end.isoformat(),
            "cluster": report.cluster,
            "currency": report.currency,
            "accounts": [asdict(row) for row in report.accounts],
        }
        return json.dumps(document, indent=2) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(list(AccountEnergy.__dataclass_fields__))
        for row in report.accounts:
            writer.writerow(asdict(row).values())
        return buffer.getvalue()
    if output_format != "markdown":
        raise ValueError(f"no energy report format {output_format!r}; choose from {FORMATS}")
    lines = [
        f"## Energy, {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d}"
        + (f" on {report.cluster}" if report.cluster else ""),
        "",
        f"| account | core-hours | GPU-hours | kWh ({SOURCE}) | cost ({report.currency}, "
        f"{SOURCE}) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {row.account or '(none)'} | {row.core_hours:,.1f} | {row.gpu_hours:,.1f} | "
        f"{row.kwh:,.2f} | {row.cost:,.2f} |"
        for row in report.accounts
    ]
    lines += [
        "",
        "Estimated from the cores and GPUs each run held, the site's watts per core and per GPU,",
        "and the tariff at the hours it ran; the cluster's own energy readings are not used.",
    ]
    return "\n".join(lines) + "\n"


def price_at(options: EnergyOptions, moment: datetime) -> float:
    """The price per kWh at ``moment``: the window holding its clock time, else ``price``."""
    clock = moment.astimezone(ZoneInfo(options.timezone)).time()
    for window in options.windows:
        start, end = _clock(window.start), _clock(window.end)
        inside = start <= clock < end if start <= end else (clock >= start or clock < end)
        if inside:
            return window.price
    return options.price


def run_cost(options: EnergyOptions, start: datetime, run_s: int, power_w: float) -> float:
    """The cost of ``power_w`` watts from ``start`` for ``run_s`` seconds, segment by segment
    between the tariff's window edges."""
    end = start + timedelta(seconds=run_s)
    return Tariff(options, start, end).cost(start, run_s, power_w)


class Tariff:
    """The tariff from ``start`` to ``end`` as prices between consecutive window edges, with
    running totals, so that pricing a run is two lookups however many candidates are tried."""

    def __init__(self, options: EnergyOptions, start: datetime, end: datetime) -> None:
        self.edges = [edge.timestamp() for edge in window_edges(options, start, end)]
        if not self.edges:  # no windows: one price everywhere
            self.edges = [start.timestamp() - 86_400]
        self.prices = [price_at(options, datetime.fromtimestamp(edge, UTC)) for edge in self.edges]
        self.before = options.price if options.windows else self.prices[0]
        self.totals = [0.0]  # price x seconds from the first edge to each edge
        for index in range(1, len(self.edges)):
            span = self.edges[index] - self.edges[index - 1]
            self.totals.append(self.totals[-1] + self.prices[index - 1] * span)

    def cost(self, start: datetime, run_s: int, power_w: float) -> float:
        """What ``power_w`` watts cost from ``start`` for ``run_s`` seconds."""
        begin = start.timestamp()
        price_seconds = self._integral(begin + run_s) - self._integral(begin)
        return price_seconds * power_w / 3_600_000

    def _integral(self, moment: float) -> float:
        index = bisect_right(self.edges, moment) - 1
        if index < 0:
            return (moment - self.edges[0]) * self.before
        return self.totals[index] + self.prices[index] * (moment - self.edges[index])


def window_edges(options: EnergyOptions, start: datetime, end: datetime) -> list[datetime]:
    """Every window edge from the day before ``start`` to the day after ``end``, in UTC."""
    zone = ZoneInfo(options.timezone)
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    edges = []
    while day <= last:
        for window in options.windows:
            for text in (window.start, window.end):
                local = datetime.combine(day, _clock(text), tzinfo=zone)
                edges.append(local.astimezone(UTC))
        day += timedelta(days=1)
    return sorted(edges)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
