"""The SLA report: per client (account), the deadlines that fell due in a period, the share
met, how late the missed ones were, and the core-hours the client used against its
guaranteed share of the cluster.

Deadlines come from the ledger's tracked deadlines (recorded met or missed by ``hpcbridge
deadlines``); one still open when it fell due counts as open, not as met. Usage is the
ledger's, split pro rata at the period's bounds as every usage report is; a client's share
is of the core-hours all accounts used in the period, which is the guaranteed share's
measure when the cluster is busy (an idle cluster lets any share look small).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from hpcbridge.jobs.units import format_signed_duration
from hpcbridge.ledger.store import Ledger

FORMATS = ("markdown", "html", "csv", "json")


@dataclass(frozen=True)
class ClientSla:
    """One client's deadlines and usage in the period."""

    client: str
    due: int  # deadlines that fell due in the period
    met: int
    missed: int
    open: int
    met_pct: float | None  # of those over
    median_lateness_s: int | None  # of the missed ones
    core_hours: float
    usage_pct: float | None  # of every account's core-hours in the period
    guaranteed_pct: float | None  # the site's share for it


@dataclass(frozen=True)
class SlaReport:
    """The period, the cluster, and one row per client."""

    start: datetime
    end: datetime
    cluster: str | None
    clients: list[ClientSla] = field(default_factory=list)


def sla_report(
    ledger: Ledger,
    start: datetime,
    end: datetime,
    *,
    cluster: str | None = None,
    shares: Mapping[str, float] | None = None,
) -> SlaReport:
    """Deadlines due in [start, end) and usage in it, per client; clients with a share but
    no deadline are listed too."""
    from sqlalchemy import select

    from hpcbridge.ledger.schema import TrackedDeadline
    from hpcbridge.ledger.usage import usage_report

    table = TrackedDeadline.__table__
    query = select(table.c.client, table.c.deadline, table.c.finished_at, table.c.outcome).where(
        table.c.deadline >= start, table.c.deadline < end
    )
    if cluster is not None:
        query = query.where(table.c.cluster == cluster)
    with ledger.transaction(read_only=True) as connection:
        deadlines = list(connection.execute(query))
    usage = usage_report(ledger, ("account",), start, end, cluster=cluster)
    hours = {row.keys[0] or "": row.usage.core_hours for row in usage.rows}
    total = usage.total.core_hours
    clients = sorted({row.client or "" for row in deadlines} | set(shares or {}))
    rows = []
    for client in clients:
        mine = [row for row in deadlines if (row.client or "") == client]
        met = sum(row.outcome == "met" for row in mine)
        missed = [row for row in mine if row.outcome == "missed"]
        late = [  # work that failed or was dropped before the deadline has no lateness
            int((row.finished_at - row.deadline).total_seconds())
            for row in missed
            if row.finished_at is not None and row.finished_at > row.deadline
        ]
        over = met + len(missed)
        rows.append(
            ClientSla(
                client=client,
                due=len(mine),
                met=met,
                missed=len(missed),
                open=len(mine) - over,
                met_pct=100 * met / over if over else None,
                median_lateness_s=round(statistics.median(late)) if late else None,
                core_hours=hours.get(client, 0.0),
                usage_pct=100 * hours.get(client, 0.0) / total if total else None,
                guaranteed_pct=(shares or {}).get(client),
            )
        )
    return SlaReport(start, end, cluster, rows)


def render(report: SlaReport, output_format: str) -> str:
    """The report in one of FORMATS."""
    if output_format == "json":
        document = {
            "from": report.start.isoformat(),
            "to": report.end.isoformat(),
            "cluster": report.cluster,
            "clients": [asdict(row) for row in report.clients],
        }
        return json.dumps(document, indent=2) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([name for name in ClientSla.__dataclass_fields__])
        for row in report.clients:
            writer.writerow(["" if value is None else value for value in asdict(row).values()])
        return buffer.getvalue()
    if output_format not in FORMATS:
        raise ValueError(f"no SLA report format {output_format!r}; choose from {FORMATS}")
    from hpcbridge.reports.usage_render import environment

    page = environment()
    page.autoescape = output_format == "html"
    template = page.get_template(
        f"reports/sla.{'md' if output_format == 'markdown' else 'html'}.j2"
    )
    return template.render(title=_title(report), headings=HEADINGS, rows=_cells(report))


HEADINGS = (
    "client",
    "deadlines due",
    "met",
    "missed",
    "open",
    "met (% of over)",
    "median lateness",
    "core-hours",
    "share of usage",
    "guaranteed share",
)


def _cells(report: SlaReport) -> list[list[str]]:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    return [
        [
            row.client or "(none)",
            str(row.due),
            str(row.met),
            str(row.missed),
            str(row.open),
            pct(row.met_pct),
            format_signed_duration(row.median_lateness_s),
            f"{row.core_hours:,.1f}",
            pct(row.usage_pct),
            pct(row.guaranteed_pct),
        ]
        for row in report.clients
    ]


def _title(report: SlaReport) -> str:
    where = f" on {report.cluster}" if report.cluster else ""
    return f"Deadlines and shares{where}, {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d}"
