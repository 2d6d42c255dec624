"""The grant report's two charts: monthly core-hours by user, and the allocation's burn-down.

Drawn with matplotlib (the ``charts`` extra) on its object API; hpcbridge.reports.charts makes
the figures and turns them into reproducible SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hpcbridge.reports import charts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hpcbridge.forecast.usage import BurnDown
    from hpcbridge.reports.grant import BurnHistory, GrantReport

CHART_USERS = 6
"""Users drawn by name in the monthly chart; the rest are stacked as "others"."""


def _figure() -> Figure:
    return charts.new_figure(
        (8, 3.6),
        purpose="the charts in HTML grant reports",
        instead="choose --format markdown, csv or json",
    )


def monthly_chart(report: GrantReport) -> Figure:
    """Core-hours per month as bars stacked by user: the largest users, then "others"."""
    figure = _figure()
    axes = figure.add_subplot()
    months = [month for month, _ in report.months]
    named = [user for user, _ in report.users[:CHART_USERS]]
    stacks = {_who(user): [0.0] * len(months) for user in named}
    if len(report.users) > len(named):
        stacks["others"] = [0.0] * len(months)
    index = {month: i for i, month in enumerate(months)}
    for (month, user), used in report.by_month_user.items():
        stacks[_who(user) if user in named else "others"][index[month]] += used.core_hours
    bottom = [0.0] * len(months)
    for label, heights in stacks.items():
        axes.bar(months, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylabel("core-hours")
    axes.yaxis.set_major_formatter("{x:,.0f}")
    axes.set_title(f"{report.account}: core-hours by month and user")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    axes.tick_params(axis="x", labelrotation=45)
    return figure


def _who(user: str | None) -> str:
    return "(no user)" if user is None else user


def burndown_chart(report: GrantReport, burn: BurnHistory) -> Figure:
    """Cumulative use against the grant, the even-pace line, and the forecast band."""
    figure = _figure()
    axes = figure.add_subplot()
    axes.xaxis_date()
    allocation = burn.allocation
    granted = allocation.balance.granted_core_hours
    axes.axhline(granted, color="black", linewidth=1, label="granted")
    axes.plot(
        _days([allocation.starts, allocation.ends]),
        [0, granted],
        color="grey",
        linestyle=":",
        label="even pace",
    )
    times, used = zip(*burn.points, strict=True)
    axes.plot(_days(times), used, marker="o", label="used")
    if burn.burndown is not None and burn.burndown.forecast:
        ahead, point, low, high = zip(*_cumulative_forecast(burn.burndown, used[-1]), strict=True)
        axes.fill_between(_days(ahead), low, high, alpha=0.25, label="forecast (80%)")
        axes.plot(_days(ahead), point, linestyle="--", label="forecast")
    axes.axvline(_days([report.as_of])[0], color="grey", linewidth=0.8)
    axes.set_ylabel("cumulative core-hours")
    axes.yaxis.set_major_formatter("{x:,.0f}")
    axes.set_title(f"{report.account}: allocation burn-down")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    figure.autofmt_xdate()
    return figure


def _days(moments: Sequence[datetime]) -> list[float]:
    """Times as matplotlib's date numbers (its typed Axes methods take floats, not datetimes)."""
    from matplotlib.dates import date2num

    return [float(day) for day in date2num(moments)]  # type: ignore[no-untyped-call]


def _cumulative_forecast(down: BurnDown, used: float) -> list[tuple[datetime, float, float, float]]:
    """(time, point, low, high) cumulative core-hours from ``used`` at as_of to each forecast
    month's end. The forecast starts with the first month beginning at or after as_of; the
    rest of the month holding as_of is spent at that first month's rate, evenly by the
    second, so the band starts where use stands now."""
    as_of = down.as_of
    rows = [(as_of, used, used, used)]
    point = low = high = used
    moment = as_of
    for month in down.forecast:
        begins = datetime(month.month.year, month.month.month, 1, tzinfo=as_of.tzinfo)
        ends = (begins + timedelta(days=32)).replace(day=1)
        share = (ends - moment) / (ends - begins)
        point += share * month.core_hours
        low += share * month.core_low
        high += share * month.core_high
        rows.append((ends, point, low, high))
        moment = ends
    return rows
