"""A workflow's DAG and expected-versus-actual timeline as DOT, Mermaid, JSON, PNG or SVG.

``hpcbridge workflow show`` calls :func:`render_workflow`, which only renders: it asks no
scheduler and writes no file (the CLI writes ``--out`` atomically). DOT and Mermaid are laid
out by Jinja templates in templates/workflow/; PNG and SVG are drawn by
:mod:`hpcbridge.workflows.chart` with matplotlib, the ``charts`` extra.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from hpcbridge.errors import SpecError
from hpcbridge.jobs.units import format_duration
from hpcbridge.resources import template_environment
from hpcbridge.workflows.timeline import (
    CRITICAL_COLOUR,
    LEGEND,
    STATE_COLOURS,
    StageTimeline,
    StageView,
    Timeline,
    WorkflowView,
    build_timeline,
)

__all__ = ["FORMATS", "StageView", "WorkflowView", "render_workflow"]

FORMATS = ("dot", "mermaid", "json", "png", "svg")


def render_workflow(
    view: WorkflowView,
    fmt: str,
    *,
    now: datetime | None = None,
    predicted: Mapping[str, float] | None = None,
) -> str | bytes:
    """``view`` in format ``fmt``: text for dot, mermaid and json, bytes for png and svg.

    ``now`` (default: the current time) places the chart's 'now' line and the end of running
    stages' bars; ``predicted`` maps stage names to expected seconds, overriding walltimes.
    """
    if fmt not in FORMATS:
        raise SpecError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    timeline = build_timeline(view, now=now, predicted=predicted)
    if fmt in ("png", "svg"):
        from hpcbridge.workflows.chart import draw

        return draw(timeline, fmt)
    renderers: dict[str, Callable[[Timeline], str]] = {
        "dot": to_dot,
        "mermaid": to_mermaid,
        "json": to_json,
    }
    return renderers[fmt](timeline)


def to_dot(timeline: Timeline) -> str:
    """A Graphviz digraph: nodes filled by state, critical path red and bold."""
    view = timeline.view
    caption = [
        f"{view.name} ({view.workflow_id})",
        f"critical path: {' -> '.join(timeline.critical_path) or 'none'}"
        f" ({format_duration(timeline.critical_length_s)})",
    ]
    nodes = [
        {
            "name": row.stage.name,
            "lines": _node_lines(row.stage),
            "fill": STATE_COLOURS[row.stage.state],
            "critical": row.critical,
        }
        for row in timeline.stages
    ]
    return _render(
        "workflow/graph.dot.j2",
        dot_quote,
        title=view.workflow_id,
        caption=caption,
        nodes=nodes,
        edges=_edges(timeline, lambda stage: stage.name),
    )


def to_mermaid(timeline: Timeline) -> str:
    """Markdown with a Mermaid flowchart of the DAG and a Mermaid Gantt chart of the timeline.

    Mermaid ids are generated (``s0``, ``s1`` ...) so any stage name is safe; names appear
    only as escaped labels and section titles.
    """
    ids = {row.stage.name: f"s{index}" for index, row in enumerate(timeline.stages)}
    edges = _edges(timeline, lambda stage: ids[stage.name])
    states = dict.fromkeys(row.stage.state for row in timeline.stages)
    nodes = [
        {"id": ids[row.stage.name], "lines": _node_lines(row.stage), "state": row.stage.state}
        for row in timeline.stages
    ]
    rows = [
        {
            "id": ids[row.stage.name],
            "name": row.stage.name,
            "crit": "crit, " if row.critical else "",
            "progress": "done, " if row.stage.ended is not None else "active, ",
            "expected_start": _gantt_time(row.expected_start),
            "expected_end": _gantt_time(row.expected_end),
            "actual_start": row.stage.started and _gantt_time(row.stage.started),
            "actual_end": _gantt_time(row.stage.ended or timeline.now),
        }
        for row in timeline.stages
    ]
    actual = timeline.actual_makespan_s
    return _render(
        "workflow/timeline.md.j2",
        None,
        view=timeline.view,
        nodes=nodes,
        edges=edges,
        state_classes=[(state, STATE_COLOURS[state]) for state in states],
        critical_ids=[ids[name] for name in timeline.critical_path],
        critical_links=[index for index, edge in enumerate(edges) if edge["critical"]],
        rows=rows,
        critical_path=timeline.critical_path,
        critical_length=format_duration(timeline.critical_length_s),
        expected_makespan=format_duration(timeline.expected_makespan_s),
        actual_makespan="not yet known" if actual is None else format_duration(actual),
        legend=LEGEND,
    )


def to_json(timeline: Timeline) -> str:
    """Everything, with stable keys, ISO 8601 UTC times, seconds as integers, null if unknown."""
    view = timeline.view
    document = {
        "workflow_id": view.workflow_id,
        "name": view.name,
        "origin": _iso(timeline.origin),
        "now": _iso(timeline.now),
        "critical_path": {
            "stages": list(timeline.critical_path),
            "length_s": timeline.critical_length_s,
        },
        "expected_makespan_s": timeline.expected_makespan_s,
        "actual_makespan_s": timeline.actual_makespan_s,
        "legend": LEGEND,
        "stages": [_stage_record(row) for row in timeline.stages],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _stage_record(row: StageTimeline) -> dict[str, Any]:
    stage = row.stage
    return {
        "name": stage.name,
        "job_id": stage.job_id,
        "state": stage.state,
        "note": stage.note,
        "depends_on": [{"stage": name, "condition": cond} for name, cond in stage.depends_on],
        "walltime_s": stage.walltime_s,
        "expected_duration_s": row.expected_duration_s,
        "duration_source": row.duration_source,
        "expected_start": _iso(row.expected_start),
        "expected_end": _iso(row.expected_end),
        "submitted": _iso(stage.submitted),
        "started": _iso(stage.started),
        "ended": _iso(stage.ended),
        "actual_duration_s": stage.actual_duration_s,
        "critical": row.critical,
    }


def dot_quote(value: Any) -> str:
    """One DOT quoted string; a list becomes the lines of one label."""
    lines = value if isinstance(value, list) else [value]
    escaped = (
        str(line).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for line in lines
    )
    return '"' + "\\n".join(escaped) + '"'


def _mermaid_label(text: str) -> str:
    """Text inside a quoted Mermaid flowchart label; Mermaid decodes ``#name;`` entities."""
    for char, entity in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, entity)
    return text


def _mermaid_section(text: str) -> str:
    """A Gantt title or section name: the Gantt lexer ends them at ``#``, ``:`` and ``;``."""
    return re.sub(r"[#:;\n]", "_", text)


def _node_lines(stage: StageView) -> list[str]:
    status = stage.state if stage.job_id is None else f"{stage.state}, job {stage.job_id}"
    return [stage.name, status] + ([stage.note] if stage.note else [])


def _edges(timeline: Timeline, node_id: Callable[[StageView], str]) -> list[dict[str, Any]]:
    """Dependency -> dependent, in declaration order (Mermaid's linkStyle counts them)."""
    by_name = {row.stage.name: row.stage for row in timeline.stages}
    critical = timeline.critical_edges
    edges = []
    for row in timeline.stages:
        for dependency, condition in row.stage.depends_on:
            on_path = (dependency, row.stage.name) in critical
            styles = ["solid" if condition == "afterok" else "dashed"] + (
                ["bold"] if on_path else []
            )
            edges.append(
                {
                    "source": node_id(by_name[dependency]),
                    "target": node_id(row.stage),
                    "condition": condition,
                    "critical": on_path,
                    "style": ",".join(styles),
                }
            )
    return edges


def _render(name: str, finalize: Callable[[Any], Any] | None, **context: Any) -> str:
    environment = template_environment(finalize=finalize)
    environment.filters.update(label=_mermaid_label, section=_mermaid_section)
    return environment.get_template(name).render(critical_colour=CRITICAL_COLOUR, **context)


def _gantt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()
