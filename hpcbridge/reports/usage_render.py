"""A usage report as a terminal table (Rich), CSV, JSON or Markdown (a Jinja template).

Machine formats (CSV, JSON) carry plain numbers under stable snake_case names: hours, seconds
and percentages, None/empty where a value is unknown. People's formats (table, Markdown)
round, group thousands, print waits as durations and add a total row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from hpcbridge.jobs.units import format_duration
from hpcbridge.resources import template_environment

if TYPE_CHECKING:
    from rich.table import Table

    from hpcbridge.ledger.usage import Balance, Usage, UsageReport


@dataclass(frozen=True)
class _Column:
    name: str
    heading: str
    value: Callable[[Usage, Balance | None], float | int | None]
    text: Callable[[Any], str]


def hours(value: float) -> str:
    return f"{value:,.2f}"


def percent(value: float) -> str:
    return f"{value:.1f}%"


def _wait(seconds: float) -> str:
    return format_duration(round(seconds))


def count(value: int) -> str:
    return f"{value:,}"


def _granted(attribute: str) -> Callable[[Usage, Balance | None], float | None]:
    return lambda _usage, balance: None if balance is None else getattr(balance, attribute)


_USAGE_COLUMNS = (
    _Column("core_hours", "core-h", lambda u, _b: u.core_hours, hours),
    _Column("gpu_hours", "GPU-h", lambda u, _b: u.gpu_hours, hours),
    _Column("jobs", "jobs", lambda u, _b: u.jobs, count),
    _Column("mean_wait_s", "mean wait", lambda u, _b: u.mean_wait_s, _wait),
    _Column("cpu_efficiency_pct", "CPU eff.", lambda u, _b: u.cpu_efficiency_pct, percent),
)
_ALLOCATION_COLUMNS = (
    _Column("granted_core_hours", "granted core-h", _granted("granted_core_hours"), hours),
    _Column("remaining_core_hours", "left core-h", _granted("remaining_core_hours"), hours),
    _Column("core_used_pct", "core used", _granted("core_used_pct"), percent),
    _Column("granted_gpu_hours", "granted GPU-h", _granted("granted_gpu_hours"), hours),
    _Column("remaining_gpu_hours", "left GPU-h", _granted("remaining_gpu_hours"), hours),
    _Column("gpu_used_pct", "GPU used", _granted("gpu_used_pct"), percent),
)


def _columns(report: UsageReport) -> tuple[_Column, ...]:
    return _USAGE_COLUMNS + (_ALLOCATION_COLUMNS if report.with_allocations else ())


def _records(report: UsageReport) -> list[dict[str, Any]]:
    """Each row as {column name: plain value}, the keys first in --by order."""
    columns = _columns(report)
    return [
        dict(zip(report.by, row.keys, strict=True))
        | {c.name: c.value(row.usage, row.balance) for c in columns}
        for row in report.rows
    ]


def _total(report: UsageReport) -> dict[str, Any]:
    return {c.name: c.value(report.total, report.total_balance) for c in _columns(report)}


def _human(report: UsageReport) -> tuple[list[str], list[list[str]], list[str]]:
    """Headings, rows and the total row as text for people; unknown values are blank."""
    columns = _columns(report)
    headings = list(report.by) + [c.heading for c in columns]

    def cells(usage: Usage, balance: Balance | None) -> list[str]:
        values = (c.value(usage, balance) for c in columns)
        return ["" if v is None else c.text(v) for c, v in zip(columns, values, strict=True)]

    rows = [[key or "" for key in row.keys] + cells(row.usage, row.balance) for row in report.rows]
    total = ["total"] + [""] * (len(report.by) - 1) + cells(report.total, report.total_balance)
    return headings, rows, total


def title(report: UsageReport) -> str:
    """What the report covers, in one line."""
    scope = [f"cluster {report.cluster}" if report.cluster else "all clusters"]
    scope.append(f"account {report.account}" if report.account else "all accounts")
    return (
        f"Usage {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC "
        f"({', '.join(scope)}) by {', '.join(report.by)}"
    )


def table(report: UsageReport) -> Table:
    """A Rich table with a total row; numbers right-aligned."""
    from rich.table import Table

    headings, rows, total = _human(report)
    result = Table(title=title(report), show_footer=bool(rows))
    for index, heading in enumerate(headings):
        numeric = index >= len(report.by)
        result.add_column(heading, justify="right" if numeric else "left", footer=total[index])
    for row in rows:
        result.add_row(*row)
    if not rows:
        result.caption = "no usage in this range"
    return result


def to_csv(report: UsageReport) -> str:
    """One header line of column names, one line per row; no total (sum it yourself)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(report.by) + [c.name for c in _columns(report)])
    for record in _records(report):
        writer.writerow(["" if value is None else value for value in record.values()])
    return buffer.getvalue()


def to_json(report: UsageReport) -> str:
    """The range, grouping, filters, rows and total as one JSON object."""
    document = {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "by": list(report.by),
        "cluster": report.cluster,
        "account": report.account,
        "rows": _records(report),
        "total": _total(report),
    }
    return json.dumps(document, indent=2) + "\n"


def to_markdown(report: UsageReport) -> str:
    """A Markdown section from templates/reports/usage.md.j2 (a site may restyle it there)."""
    headings, rows, total = _human(report)
    aligns = ["---"] * len(report.by) + ["---:"] * (len(headings) - len(report.by))
    template = environment().get_template("reports/usage.md.j2")
    return template.render(
        title=title(report), headings=headings, aligns=aligns, rows=rows, total=total
    )


def environment() -> jinja2.Environment:
    """Report templates are Markdown, not shell: no quoting, but ``|`` in a cell is escaped."""
    result = template_environment()
    result.filters["cell"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    return result


def render(report: UsageReport, output_format: str) -> str:
    """The report as ``csv``, ``json`` or ``markdown`` text (for a terminal, :func:`table`)."""
    renderers = {"csv": to_csv, "json": to_json, "markdown": to_markdown}
    if output_format not in renderers:
        raise ValueError(f"no text format {output_format!r}; choose from {', '.join(renderers)}")
    return renderers[output_format](report)
