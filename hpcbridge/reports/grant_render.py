"""A grant report as HTML (one self-contained file with charts), Markdown, CSV or JSON.

Every format starts from the same records (:func:`sections`): plain numbers under stable
snake_case names, which JSON and CSV carry as they are and Markdown and HTML format for
people (thousands grouped, durations spelled out), so the formats cannot disagree. HTML must
open offline and be mailed as one file: its CSS is inline and its charts are SVG written
into the page, with no scripts, fonts or links to fetch. Matplotlib draws them
(hpcbridge.reports.grant_charts); it is the ``charts`` extra and loads only for HTML.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from hpcbridge.jobs.units import format_duration
from hpcbridge.reports import charts, grant_charts
from hpcbridge.reports.usage_render import count, environment, hours, percent
from hpcbridge.resources import template_environment

if TYPE_CHECKING:
    from hpcbridge.ledger.usage import Usage
    from hpcbridge.reports.grant import AllocationUse, BurnHistory, GrantReport

FORMATS = ("html", "markdown", "csv", "json")
"""Users drawn by name in the monthly chart; the rest are stacked as "others"."""


@dataclass(frozen=True)
class _Column:
    name: str
    heading: str
    text: Callable[[Any], str]
    numeric: bool = True


def _moment(value: datetime | date) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else f"{value:%Y-%m-%d}"


def _plain(value: Any) -> str:
    return str(value)


def _elapsed(seconds: int) -> str:
    return format_duration(seconds)


_USAGE = (
    _Column("core_hours", "core-h", hours),
    _Column("gpu_hours", "GPU-h", hours),
    _Column("jobs", "jobs", count),
    _Column("cpu_efficiency_pct", "CPU eff.", percent),
)
_COLUMNS: dict[str, tuple[_Column, ...]] = {
    "month": (_Column("month", "month", _plain, numeric=False), *_USAGE),
    "user": (
        _Column("user", "user", _plain, numeric=False),
        *_USAGE,
        _Column("core_share_pct", "share", percent),
    ),
    "allocation": (
        _Column("starts", "starts", _moment, numeric=False),
        _Column("ends", "ends", _moment, numeric=False),
        _Column("granted_core_hours", "granted core-h", hours),
        _Column("used_core_hours", "used core-h", hours),
        _Column("remaining_core_hours", "left core-h", hours),
        _Column("core_used_pct", "core used", percent),
        _Column("granted_gpu_hours", "granted GPU-h", hours),
        _Column("used_gpu_hours", "used GPU-h", hours),
        _Column("remaining_gpu_hours", "left GPU-h", hours),
        _Column("gpu_used_pct", "GPU used", percent),
    ),
    "forecast": (
        _Column("month", "month", _plain, numeric=False),
        _Column("core_hours", "core-h", hours),
        _Column("core_low", "core-h low", hours),
        _Column("core_high", "core-h high", hours),
        _Column("gpu_hours", "GPU-h", hours),
        _Column("gpu_low", "GPU-h low", hours),
        _Column("gpu_high", "GPU-h high", hours),
    ),
    "top_jobs": (
        _Column("job_id", "job", _plain, numeric=False),
        _Column("attempt", "run", count),
        _Column("user", "user", _plain, numeric=False),
        _Column("name", "name", _plain, numeric=False),
        _Column("state", "state", _plain, numeric=False),
        _Column("start", "start", _moment, numeric=False),
        _Column("elapsed_s", "elapsed", _elapsed),
        _Column("core_hours", "core-h", hours),
        _Column("gpu_hours", "GPU-h", hours),
    ),
}
_TITLES = {
    "month": "Usage by month",
    "user": "Usage by user",
    "allocation": "Allocations",
    "forecast": "Forecast",
    "top_jobs": "Top jobs by core-hours",
}


def _usage(used: Usage) -> dict[str, Any]:
    return {
        "core_hours": used.core_hours,
        "gpu_hours": used.gpu_hours,
        "jobs": used.jobs,
        "cpu_efficiency_pct": used.cpu_efficiency_pct,
    }


def _allocation(allocation: AllocationUse) -> dict[str, Any]:
    balance = allocation.balance
    return {
        "starts": allocation.starts,
        "ends": allocation.ends,
        "granted_core_hours": balance.granted_core_hours,
        "used_core_hours": balance.used_core_hours,
        "remaining_core_hours": balance.remaining_core_hours,
        "core_used_pct": balance.core_used_pct,
        "granted_gpu_hours": balance.granted_gpu_hours,
        "used_gpu_hours": balance.used_gpu_hours,
        "remaining_gpu_hours": balance.remaining_gpu_hours,
        "gpu_used_pct": balance.gpu_used_pct,
    }


def sections(report: GrantReport) -> dict[str, list[dict[str, Any]]]:
    """The report's tables as records of plain values, keyed by section name."""
    total = report.total.core_hours
    forecast = report.burn.burndown.forecast if report.burn and report.burn.burndown else ()
    return {
        "month": [{"month": month} | _usage(used) for month, used in report.months],
        "user": [
            {"user": user}
            | _usage(used)
            | {"core_share_pct": 100 * used.core_hours / total if total else None}
            for user, used in report.users
        ],
        "allocation": [_allocation(allocation) for allocation in report.allocations],
        "forecast": [
            {column.name: getattr(month, column.name) for column in _COLUMNS["forecast"]}
            | {"month": f"{month.month:%Y-%m}"}  # as the usage months are labelled
            for month in forecast
        ],
        "top_jobs": [
            {
                "job_id": job.job_id if job.array_index < 0 else f"{job.job_id}_{job.array_index}",
                "attempt": job.attempt,
                "user": job.user,
                "name": job.name,
                "state": job.state,
                "start": job.start,
                "elapsed_s": job.elapsed_s,
                "core_hours": job.core_hours,
                "gpu_hours": job.gpu_hours,
            }
            for job in report.top_jobs
        ],
    }


def _burndown(burn: BurnHistory | None) -> dict[str, Any] | None:
    """The burn-down's numbers (JSON); the forecast months are a section of their own."""
    if burn is None:
        return None
    summary: dict[str, Any] = {
        "allocation_starts": burn.allocation.starts,
        "allocation_ends": burn.allocation.ends,
        "granted_core_hours": burn.allocation.balance.granted_core_hours,
        "cumulative_core_hours": [{"at": at, "core_hours": used} for at, used in burn.points],
        "forecast_problem": burn.forecast_problem,
    }
    if burn.burndown is not None:
        down = burn.burndown
        summary |= {
            "as_of": down.as_of,
            "used_core_hours": down.used_core_hours,
            "daily_burn_current": down.daily_burn_current,
            "exhaustion_current": down.exhaustion_current,
            "exhaustion_forecast": down.exhaustion_forecast,
            "exhaustion_early": down.exhaustion_early,
            "exhaustion_late": down.exhaustion_late,
        }
    return summary


def to_json(report: GrantReport) -> str:
    """Everything in the report as one JSON object; times as ISO 8601."""
    tables = sections(report)
    document = {
        "account": report.account,
        "cluster": report.cluster,
        "from": report.start,
        "to": report.end,
        "as_of": report.as_of,
        "empty": report.empty,
        "total": _usage(report.total),
        "months": tables["month"],
        "users": tables["user"],
        "allocations": tables["allocation"],
        "burndown": _burndown(report.burn),
        "forecast": tables["forecast"],
        "top_jobs": tables["top_jobs"],
    }
    return json.dumps(document, indent=2, default=_iso) + "\n"


def _iso(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_csv(report: GrantReport) -> str:
    """One long table: a ``section`` column (month, user, allocation, forecast, top_jobs),
    then every section's columns, blank where a section has no such column."""
    tables = sections(report)
    names = ["section"]
    for columns in _COLUMNS.values():
        names += [c.name for c in columns if c.name not in names]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, names, restval="", lineterminator="\n")
    writer.writeheader()
    for section, records in tables.items():
        for record in records:
            plain = {
                k: "" if v is None else _iso(v) if isinstance(v, date) else v
                for k, v in record.items()
            }
            writer.writerow({"section": section} | plain)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Table:
    """A section as text for people: what the Markdown and HTML templates print."""

    name: str
    title: str
    headings: list[str]
    numeric: list[bool]
    rows: list[list[str]]


def _tables(report: GrantReport) -> list[_Table]:
    tables = []
    for name, records in sections(report).items():
        columns = _COLUMNS[name]
        rows = [
            ["" if record[c.name] is None else c.text(record[c.name]) for c in columns]
            for record in records
        ]
        if rows:
            tables.append(
                _Table(
                    name,
                    _TITLES[name],
                    [c.heading for c in columns],
                    [c.numeric for c in columns],
                    rows,
                )
            )
    return tables


def _facts(report: GrantReport) -> list[tuple[str, str]]:
    """The headline numbers as (label, text) pairs, burn-down included."""
    total = report.total
    facts = [
        ("period", f"{_moment(report.start)} to {_moment(report.end)} UTC (end exclusive)"),
        ("cluster", report.cluster or "all clusters"),
        ("core-hours", hours(total.core_hours)),
        ("GPU-hours", hours(total.gpu_hours)),
        ("jobs started", count(total.jobs)),
    ]
    if total.cpu_efficiency_pct is not None:
        facts.append(("CPU efficiency", percent(total.cpu_efficiency_pct)))
    burn = report.burn
    if burn is None:
        facts.append(("burn-down", f"no allocation covers {_moment(report.as_of)}"))
        return facts
    balance = burn.allocation.balance
    facts.append(
        (
            "allocation",
            f"{hours(balance.granted_core_hours)} core-h from {_moment(burn.allocation.starts)}"
            f" to {_moment(burn.allocation.ends)}; {hours(balance.used_core_hours)} used by "
            f"{_moment(report.as_of)}",
        )
    )
    down = burn.burndown
    if down is None:
        facts.append(("forecast", f"none: {burn.forecast_problem}"))
        return facts
    facts += [
        ("current burn", f"{hours(down.daily_burn_current)} core-h/day"),
        ("exhausted at current burn", _day(down.exhaustion_current)),
        ("exhausted at forecast burn", _day(down.exhaustion_forecast)),
        ("forecast range", f"{_day(down.exhaustion_early)} to {_day(down.exhaustion_late)}"),
    ]
    return facts


def _day(value: date | None) -> str:
    return "not before the allocation ends" if value is None else f"{value:%Y-%m-%d}"


def _title(report: GrantReport) -> str:
    return f"Grant report: account {report.account}"


def to_markdown(report: GrantReport) -> str:
    """Tables and headline numbers to paste into a proposal (charts are in the HTML)."""
    template = environment().get_template("reports/grant.md.j2")
    return template.render(
        title=_title(report), facts=_facts(report), tables=_tables(report), empty=report.empty
    )


def to_html(report: GrantReport) -> str:
    """One HTML page with inline CSS and SVG charts; it fetches nothing when opened."""
    page = template_environment(autoescape=True)
    figures = [] if report.empty else [(grant_charts.monthly_chart(report), "monthly")]
    if report.burn is not None:
        figures.append((grant_charts.burndown_chart(report, report.burn), "burndown"))
    return page.get_template("reports/grant.html.j2").render(
        title=_title(report),
        facts=_facts(report),
        tables=_tables(report),
        charts=[Markup(charts.inline_svg(figure, salt=salt)) for figure, salt in figures],
        empty=report.empty,
    )


def render(report: GrantReport, output_format: str) -> str:
    """The report in one of FORMATS."""
    renderers = {"html": to_html, "markdown": to_markdown, "csv": to_csv, "json": to_json}
    if output_format not in renderers:
        raise ValueError(f"no grant report format {output_format!r}; choose from {FORMATS}")
    return renderers[output_format](report)
