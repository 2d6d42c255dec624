"""A workflow as a picture: its DAG beside a Gantt chart of expected versus actual windows.

matplotlib is the ``charts`` extra, loaded only when a picture is asked for; the Figure (Agg
canvas, no pyplot) and the reproducible PNG or SVG bytes come from :mod:`hpcbridge.reports.charts`.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, cast

from hpcbridge.reports import charts
from hpcbridge.workflows.timeline import CRITICAL_COLOUR, STATE_COLOURS, Timeline, dependency_graph

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from matplotlib.axes import Axes
    from matplotlib.text import Text

_OUTLINE = "#555555"


def draw(timeline: Timeline, fmt: str) -> bytes:
    """The two-panel chart as ``png`` or ``svg`` bytes; its height grows with the stages."""
    view = timeline.view
    figure = charts.new_figure((14, max(4.0, 0.5 * len(view.stages) + 2)), purpose=f"{fmt} output")
    dag, gantt = figure.subplots(1, 2, width_ratios=[1, 2])
    _draw_dag(dag, timeline)
    _draw_gantt(gantt, timeline)
    figure.suptitle(_plain(f"{view.name} ({view.workflow_id})"))
    return charts.save(figure, fmt)


def _draw_dag(axes: Axes, timeline: Timeline) -> None:
    """Stages in rows by topological generation, so every arrow points down."""
    import networkx as nx

    graph = dependency_graph(timeline.view)
    position: dict[str, tuple[float, float]] = {}
    generations = list(nx.topological_generations(graph))
    for depth, names in enumerate(generations):
        for index, name in enumerate(names):
            position[name] = (index - (len(names) - 1) / 2, -depth)
    boxes: dict[str, Text] = {}
    for row in timeline.stages:
        stage = row.stage
        boxes[stage.name] = axes.text(
            *position[stage.name],
            _plain(f"{stage.name}\n{stage.state}"),
            ha="center",
            va="center",
            fontsize=8,
            bbox={
                "boxstyle": "round",
                "facecolor": STATE_COLOURS[stage.state],
                "edgecolor": CRITICAL_COLOUR if row.critical else _OUTLINE,
                "linewidth": 2.5 if row.critical else 1,
            },
        )
    critical = timeline.critical_edges
    for row in timeline.stages:
        target = row.stage.name
        for source, condition in row.stage.depends_on:
            on_path = (source, target) in critical
            axes.annotate(
                "",
                xy=(0.5, 1),
                xycoords=boxes[target],
                xytext=(0.5, 0),
                textcoords=boxes[source],
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": CRITICAL_COLOUR if on_path else _OUTLINE,
                    "linewidth": 2.5 if on_path else 1,
                    "linestyle": "solid" if condition == "afterok" else "dashed",
                },
            )
            if condition != "afterok":
                (x1, y1), (x2, y2) = position[source], position[target]
                middle = ((x1 + x2) / 2, (y1 + y2) / 2)
                axes.annotate(
                    condition,
                    middle,
                    xytext=(4, 0),
                    textcoords="offset points",
                    fontsize=7,
                    color=_OUTLINE,
                )
    widest = max(len(names) for names in generations)
    axes.set_xlim(-widest / 2 - 0.2, widest / 2 + 0.2)
    axes.set_ylim(-len(generations) + 0.4, 0.6)
    axes.set_axis_off()


def _draw_gantt(axes: Axes, timeline: Timeline) -> None:
    """Per stage a hatched expected bar above a filled actual bar; running bars end at now."""
    from matplotlib import dates
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    days = cast("Callable[[datetime], float]", dates.date2num)  # matplotlib leaves it untyped
    for y, row in enumerate(timeline.stages):
        stage = row.stage
        edge = CRITICAL_COLOUR if row.critical else _OUTLINE
        line = 2 if row.critical else 1
        start = days(row.expected_start)
        width = days(row.expected_end) - start
        axes.barh(
            y - 0.2,
            width,
            left=start,
            height=0.35,
            fill=False,
            hatch="//",
            edgecolor=edge,
            linewidth=line,
        )
        if stage.started is not None:
            start = days(stage.started)
            width = days(stage.ended or timeline.now) - start
            axes.barh(
                y + 0.2,
                width,
                left=start,
                height=0.35,
                color=STATE_COLOURS[stage.state],
                edgecolor=edge,
                linewidth=line,
            )
    axes.axvline(days(timeline.now), color="black", linestyle="--", linewidth=1)
    axes.set_yticks(
        range(len(timeline.stages)), labels=[_plain(row.stage.name) for row in timeline.stages]
    )
    for label, row in zip(axes.get_yticklabels(), timeline.stages, strict=True):
        if row.critical:
            label.set_color(CRITICAL_COLOUR)
            label.set_fontweight("bold")
    axes.invert_yaxis()
    axes.xaxis_date(tz=UTC)
    axes.set_xlabel(f"time (UTC) from {timeline.origin.astimezone(UTC):%Y-%m-%d %H:%M}")
    predicted = any(row.duration_source == "prediction" for row in timeline.stages)
    expected = (
        "expected (prediction or walltime)" if predicted else "expected (walltime: upper bound)"
    )
    axes.legend(
        handles=[
            Patch(fill=False, hatch="//", edgecolor=_OUTLINE, label=expected),
            Patch(facecolor=STATE_COLOURS["COMPLETED"], label="actual (coloured by state)"),
            Patch(fill=False, edgecolor=CRITICAL_COLOUR, linewidth=2, label="critical path"),
            Line2D([], [], color="black", linestyle="--", label="now"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
    )


def _plain(text: str) -> str:
    """Text shown as written: a ``$`` would otherwise start matplotlib's math mode."""
    return text.replace("$", r"\$")
