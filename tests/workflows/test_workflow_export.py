"""Workflow timelines and exports on hand-built views whose schedules are worked out by hand.

The views are what ``hpcbridge.workflows.run`` builds from the store and one status query; here
they are written out so every expected start, end, path and makespan is known exactly.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hpcbridge import JobState
from hpcbridge.errors import ConfigError, SpecError
from hpcbridge.workflows.export import FORMATS, StageView, WorkflowView, render_workflow
from hpcbridge.workflows.timeline import STATE_COLOURS, build_timeline

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stage(
    name: str,
    *depends_on: str | tuple[str, str],
    state: str = "PENDING",
    walltime_s: int | None = 3600,
    submitted: datetime | None = T0,
    started: datetime | None = None,
    ended: datetime | None = None,
    note: str = "",
) -> StageView:
    dependencies = tuple((d, "afterok") if isinstance(d, str) else d for d in depends_on)
    job_id = None if submitted is None else str(sum(map(ord, name)))
    return StageView(name, job_id, state, dependencies, walltime_s, submitted, started, ended, note)


def diamond(**overrides: dict[str, Any]) -> WorkflowView:
    """prep (1 h) -> sim-a (2 h) and sim-b (30 min) -> merge (10 min), all submitted at T0."""
    shapes: dict[str, dict[str, Any]] = {
        "prep": {"walltime_s": 3600},
        "sim-a": {"walltime_s": 7200},
        "sim-b": {"walltime_s": 1800},
        "merge": {"walltime_s": 600},
    }
    parents = {"prep": (), "sim-a": ("prep",), "sim-b": ("prep",), "merge": ("sim-a", "sim-b")}
    return WorkflowView(
        "wf-1",
        "diamond",
        tuple(
            stage(name, *parents[name], **(shape | overrides.get(name, {})))
            for name, shape in shapes.items()
        ),
    )


def windows(view: WorkflowView, **kwargs: Any) -> dict[str, tuple[datetime, datetime]]:
    timeline = build_timeline(view, now=NOW, **kwargs)
    return {row.stage.name: (row.expected_start, row.expected_end) for row in timeline.stages}


# -- the expected schedule ------------------------------------------------------------------


def test_before_anything_runs_each_stage_waits_for_the_last_expected_end() -> None:
    timeline = build_timeline(diamond(), now=NOW)
    assert windows(diamond()) == {
        "prep": (at(0), at(60)),
        "sim-a": (at(60), at(180)),
        "sim-b": (at(60), at(90)),
        "merge": (at(180), at(190)),
    }
    assert timeline.critical_path == ("prep", "sim-a", "merge")
    assert timeline.critical_length_s == (60 + 120 + 10) * 60
    assert timeline.expected_makespan_s == 190 * 60
    assert timeline.actual_makespan_s is None
    assert timeline.origin == T0


def test_actual_starts_and_ends_re_anchor_what_follows() -> None:
    view = diamond(
        prep={"state": "COMPLETED", "started": at(0), "ended": at(20)},
        **{
            "sim-a": {"state": "RUNNING", "started": at(25)},
            "sim-b": {"state": "COMPLETED", "started": at(20), "ended": at(50)},
        },
    )
    assert windows(view) == {
        "prep": (at(0), at(60)),  # its own plan stays, to compare with 0..20
        "sim-a": (at(20), at(140)),  # prep really ended at 20
        "sim-b": (at(20), at(50)),
        "merge": (at(145), at(155)),  # sim-a started at 25, so it ends by 25 + 120
    }


def test_a_stage_never_starts_before_its_own_submission() -> None:
    view = diamond(merge={"submitted": at(300)})
    assert windows(view)["merge"] == (at(300), at(310))


def test_a_stage_without_walltime_is_given_the_mean_of_the_others() -> None:
    view = diamond(merge={"walltime_s": None})
    timeline = build_timeline(view, now=NOW)
    merge = timeline.stages[3]
    assert merge.expected_duration_s == (3600 + 7200 + 1800) // 3
    assert merge.duration_source == "mean of others"
    assert merge.expected_end - merge.expected_start == timedelta(seconds=4200)


def test_with_no_durations_at_all_every_stage_is_instant() -> None:
    view = WorkflowView(
        "wf-0", "blank", (stage("a", walltime_s=None), stage("b", "a", walltime_s=None))
    )
    timeline = build_timeline(view, now=NOW)
    assert [(row.expected_duration_s, row.duration_source) for row in timeline.stages] == [
        (0, "unknown"),
        (0, "unknown"),
    ]
    assert timeline.expected_makespan_s == 0


def test_predictions_override_walltimes() -> None:
    view = diamond(merge={"walltime_s": None})
    timeline = build_timeline(view, now=NOW, predicted={"sim-a": 600, "merge": 300.4})
    by_name = {row.stage.name: row for row in timeline.stages}
    assert (by_name["sim-a"].expected_duration_s, by_name["sim-a"].duration_source) == (
        600,
        "prediction",
    )
    assert (by_name["merge"].expected_duration_s, by_name["merge"].duration_source) == (
        300,
        "prediction",
    )
    # sim-b's 30 min now outweighs sim-a's predicted 10 min.
    assert timeline.critical_path == ("prep", "sim-b", "merge")
    assert by_name["merge"].expected_start == at(90)


def test_a_workflow_never_submitted_is_planned_from_now() -> None:
    view = WorkflowView(
        "wf-2",
        "draft",
        (
            stage("a", state="NOT_SUBMITTED", submitted=None),
            stage("b", "a", state="NOT_SUBMITTED", submitted=None, walltime_s=60),
        ),
    )
    timeline = build_timeline(view, now=NOW)
    assert timeline.origin == NOW
    assert windows(view) == {
        "a": (NOW, NOW + timedelta(hours=1)),
        "b": (NOW + timedelta(hours=1), NOW + timedelta(minutes=61)),
    }
    assert [row.stage.job_id for row in timeline.stages] == [None, None]


# -- the critical path ------------------------------------------------------------------------


def test_actual_durations_change_the_critical_path() -> None:
    planned = build_timeline(diamond(), now=NOW)
    assert planned.critical_path == ("prep", "sim-a", "merge")
    view = diamond(
        prep={"state": "COMPLETED", "started": at(0), "ended": at(30)},
        **{
            "sim-a": {"state": "COMPLETED", "started": at(30), "ended": at(40)},
            "sim-b": {"state": "COMPLETED", "started": at(30), "ended": at(110)},
        },
    )
    timeline = build_timeline(view, now=at(120))
    assert timeline.critical_path == ("prep", "sim-b", "merge")
    assert timeline.critical_length_s == (30 + 80 + 10) * 60
    assert [row.critical for row in timeline.stages] == [True, False, True, True]
    assert timeline.critical_edges == {("prep", "sim-b"), ("sim-b", "merge")}


def test_stages_that_took_no_measurable_time_still_have_the_longest_chain_as_critical() -> None:
    instant = {"started": at(0), "ended": at(0), "state": "COMPLETED"}
    view = diamond(**{name: instant for name in ("prep", "sim-a", "sim-b", "merge")})
    timeline = build_timeline(view, now=NOW)
    assert len(timeline.critical_path) == 3
    assert timeline.critical_path[0] == "prep"
    assert timeline.critical_path[-1] == "merge"
    assert timeline.critical_length_s == 0


def failed_run() -> WorkflowView:
    """sim fails; post (afterok) is cancelled unrun; report (afterany) still runs."""
    return WorkflowView(
        "wf-3",
        "broken",
        (
            stage("prep", state="COMPLETED", started=at(0), ended=at(10)),
            stage("sim", "prep", state="FAILED", started=at(10), ended=at(15)),
            stage(
                "post",
                "sim",
                state="CANCELLED",
                ended=at(15),
                note="cancelled: dependency 'sim' failed",
            ),
            stage(
                "report",
                ("sim", "afterany"),
                state="COMPLETED",
                walltime_s=600,
                started=at(16),
                ended=at(18),
            ),
        ),
    )


def test_a_failed_stage_and_its_cancelled_dependent() -> None:
    timeline = build_timeline(failed_run(), now=at(30))
    post = timeline.stages[2]
    assert post.stage.never_ran
    assert post.stage.actual_duration_s is None
    assert (post.expected_start, post.expected_end) == (at(15), at(75))
    assert timeline.critical_path == ("prep", "sim", "report")
    assert timeline.critical_length_s == (10 + 5 + 2) * 60
    assert timeline.actual_makespan_s == 18 * 60


# -- DOT --------------------------------------------------------------------------------------

_ID = r'"(?:[^"\\]|\\.)*"'
_VALUE = rf"(?:{_ID}|[\w.]+)"
_ATTRS = rf"\[\w+={_VALUE}(?:, \w+={_VALUE})*\]"
_NODE = re.compile(rf"^  ({_ID}) ({_ATTRS});$")
_EDGE = re.compile(rf"^  ({_ID}) -> ({_ID}) ({_ATTRS});$")


def unquote(text: str) -> str:
    """A DOT quoted string's text: backslash escapes the next character, ``\\n`` breaks lines."""
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text[1:-1])


def attributes(text: str) -> dict[str, str]:
    pairs = re.findall(rf"(\w+)=({_VALUE})", text)
    return {key: unquote(value) if value.startswith('"') else value for key, value in pairs}


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], dict[str, str]]]:
    """Nodes and edges of the DOT subset render_workflow writes; any other line fails."""
    lines = text.splitlines()
    assert re.fullmatch(rf"digraph {_ID} {{", lines[0])
    assert lines[-1] == "}"
    nodes: dict[str, dict[str, str]] = {}
    edges: dict[tuple[str, str], dict[str, str]] = {}
    for line in lines[1:-1]:
        if line.startswith(("  graph [", "  node [", "  edge [")):
            assert line.endswith("];")
        elif edge := _EDGE.match(line):
            edges[unquote(edge[1]), unquote(edge[2])] = attributes(edge[3])
        else:
            node = _NODE.match(line)
            assert node, f"not a DOT statement: {line!r}"
            nodes[unquote(node[1])] = attributes(node[2])
    return nodes, edges


def test_dot_is_the_graph_with_states_conditions_and_the_critical_path() -> None:
    nodes, edges = parse_dot(str(render_workflow(failed_run(), "dot", now=at(30))))
    assert set(nodes) == {"prep", "sim", "post", "report"}
    assert nodes["sim"]["fillcolor"] == STATE_COLOURS["FAILED"]
    assert nodes["post"]["fillcolor"] == STATE_COLOURS["CANCELLED"]
    assert nodes["post"]["label"].splitlines()[-1] == "cancelled: dependency 'sim' failed"
    assert {name for name, attrs in nodes.items() if attrs.get("penwidth") == "3"} == {
        "prep",
        "sim",
        "report",
    }
    assert set(edges) == {("prep", "sim"), ("sim", "post"), ("sim", "report")}
    assert "label" not in edges["sim", "post"]
    assert edges["sim", "report"]["label"] == "afterany"
    assert edges["sim", "report"]["style"] == "dashed,bold"
    assert edges["sim", "post"]["style"] == "solid"


def test_dot_quotes_quotes_and_backslashes_in_names() -> None:
    names = ['say-"hi"', "back\\slash", "plain"]
    view = WorkflowView(
        'wf-"q"',
        "odd",
        (stage(names[0]), stage(names[1], names[0]), stage(names[2], (names[1], "afternotok"))),
    )
    nodes, edges = parse_dot(str(render_workflow(view, "dot", now=NOW)))
    assert set(nodes) == set(names)
    assert nodes[names[0]]["label"].splitlines()[0] == 'say-"hi"'
    assert nodes[names[1]]["label"].splitlines()[0] == "back\\slash"
    assert edges[names[1], names[2]]["label"] == "afternotok"


# -- Mermaid ----------------------------------------------------------------------------------

_TASK = re.compile(
    r"^    (expected|actual) :((?:crit|done|active), )*(s\d+)_(expected|actual), "
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d), (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$"
)


def mermaid_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"```mermaid\n(.*?)```", text, re.S)]


def test_mermaid_has_a_flowchart_and_a_gantt_with_expected_and_actual_bars() -> None:
    view = diamond(
        prep={"state": "COMPLETED", "started": at(0), "ended": at(20)},
        **{"sim-a": {"state": "RUNNING", "started": at(25)}},
    )
    flowchart, gantt = mermaid_blocks(str(render_workflow(view, "mermaid", now=NOW)))
    assert flowchart[0] == "flowchart TD"
    assert '    s0["prep<br/>COMPLETED, job ' in "\n".join(flowchart)
    assert {"    s0 --> s1", "    s0 --> s2", "    s1 --> s3", "    s2 --> s3"} <= set(flowchart)
    assert "    class s0,s1,s3 critical" in flowchart
    assert [line for line in flowchart if line.startswith("    linkStyle")] == [
        "    linkStyle 0 stroke:#d62728,stroke-width:4px",
        "    linkStyle 2 stroke:#d62728,stroke-width:4px",
    ]
    assert gantt[:4] == [
        "gantt",
        "    title diamond expected vs actual (UTC)",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        "    axisFormat %H:%M",
    ]
    tasks = [_TASK.match(line) for line in gantt if not line.startswith(("gantt", "    title"))]
    tasks = [task for task in tasks if task]
    assert [(t[3], t[4], t[2]) for t in tasks] == [
        ("s0", "expected", "crit, "),
        ("s0", "actual", "done, "),  # the last tag of "crit, done, " is kept by the group
        ("s1", "expected", "crit, "),
        ("s1", "actual", "active, "),
        ("s2", "expected", None),
        ("s3", "expected", "crit, "),
    ]
    prep_actual = tasks[1]
    assert prep_actual[0].startswith("    actual :crit, done, ")
    assert (prep_actual[5], prep_actual[6]) == ("2026-11-23 10:00:00", "2026-11-23 10:20:00")
    running = tasks[3]
    assert (running[5], running[6]) == ("2026-11-23 10:25:00", "2026-11-23 11:00:00")  # to now
    assert [line for line in gantt if line.startswith("    section")] == [
        "    section prep",
        "    section sim-a",
        "    section sim-b",
        "    section merge",
    ]


def test_mermaid_ids_are_generated_and_labels_escaped() -> None:
    view = WorkflowView(
        "wf-4",
        "odd",
        (stage('a"b#c'), stage("x:y;z<w>", ('a"b#c', "afterany"))),
    )
    text = str(render_workflow(view, "mermaid", now=NOW))
    flowchart, gantt = mermaid_blocks(text)
    assert '    s0["a#quot;b#35;c<br/>PENDING, job ' in "\n".join(flowchart)
    assert '    s1["x:y;z#lt;w#gt;<br/>PENDING, job ' in "\n".join(flowchart)
    assert "    s0 -. afterany .-> s1" in flowchart
    assert '    section a"b_c' in gantt
    assert "    section x_y_z<w>" in gantt
    node_ids = {m for line in flowchart for m in re.findall(r"^    (\S+)\[", line)}
    assert node_ids == {"s0", "s1"}


# -- JSON -------------------------------------------------------------------------------------


def test_json_holds_every_value_with_iso_utc_times() -> None:
    view = failed_run()
    document = json.loads(render_workflow(view, "json", now=at(30)))
    timeline = build_timeline(view, now=at(30))
    assert list(document) == [
        "workflow_id",
        "name",
        "origin",
        "now",
        "critical_path",
        "expected_makespan_s",
        "actual_makespan_s",
        "legend",
        "stages",
    ]
    assert document["critical_path"] == {"stages": ["prep", "sim", "report"], "length_s": 1020}
    assert document["actual_makespan_s"] == 18 * 60
    assert document["expected_makespan_s"] == timeline.expected_makespan_s == 75 * 60
    assert "upper bound" in document["legend"]
    assert datetime.fromisoformat(document["origin"]) == T0
    for record, row in zip(document["stages"], timeline.stages, strict=True):
        assert record["name"] == row.stage.name
        assert record["state"] == row.stage.state
        assert datetime.fromisoformat(record["expected_start"]) == row.expected_start
        assert datetime.fromisoformat(record["expected_end"]) == row.expected_end
        assert record["expected_start"].endswith("+00:00")
        assert record["critical"] == row.critical
    post = document["stages"][2]
    assert post["started"] is None
    assert post["ended"] == "2026-11-23T10:15:00+00:00"
    assert post["note"] == "cancelled: dependency 'sim' failed"
    assert document["stages"][3]["depends_on"] == [{"stage": "sim", "condition": "afterany"}]
    assert document["stages"][3]["actual_duration_s"] == 120


def test_json_times_given_in_another_zone_come_out_in_utc() -> None:
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    view = WorkflowView("wf-5", "tz", (stage("a", submitted=moment),))
    record = json.loads(render_workflow(view, "json", now=NOW))["stages"][0]
    assert record["submitted"] == moment.astimezone(UTC).isoformat()


# -- PNG and SVG ------------------------------------------------------------------------------


def test_png_is_a_png_as_large_as_the_figure() -> None:
    data = render_workflow(diamond(), "png", now=NOW)
    assert isinstance(data, bytes)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 400)  # 14 x max(4, 0.5 * 4 + 2) inches at 100 dpi
    assert 10_000 < len(data) < 1_000_000


def test_svg_parses_names_every_stage_and_is_reproducible() -> None:
    view = failed_run()
    names = [row.name for row in view.stages]
    view = WorkflowView(view.workflow_id, "cost$1", view.stages)
    first = render_workflow(view, "svg", now=at(30))
    assert first == render_workflow(view, "svg", now=at(30))
    assert isinstance(first, bytes)
    root = ET.fromstring(first)
    texts = [
        text
        for element in root.iter("{http://www.w3.org/2000/svg}text")
        for text in element.itertext()
    ]
    for name in names:
        assert any(name in text for text in texts), name
    assert any("cost$1 (wf-3)" in text for text in texts)
    assert "expected (walltime: upper bound)" in texts
    assert b"<dc:date>" not in first


def test_a_tall_workflow_gets_a_taller_chart() -> None:
    stages = tuple(stage(f"step{i}", *([f"step{i - 1}"] if i else [])) for i in range(12))
    data = render_workflow(WorkflowView("wf-6", "chain", stages), "png", now=NOW)
    assert struct.unpack(">II", data[16:24]) == (1400, 800)


def test_a_chart_with_predictions_says_so_in_its_legend() -> None:
    svg = render_workflow(diamond(), "svg", now=NOW, predicted={"prep": 60})
    root = ET.fromstring(svg)
    assert "expected (prediction or walltime)" in set(root.itertext())


def test_png_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=re.escape("pip install 'hpcbridge[charts]'")):
        render_workflow(diamond(), "png", now=NOW)


# -- bad input and imports ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: stage("a", state="DONE"), "state 'DONE'"),
        (lambda: stage("a", ("b", "after")), "condition 'after' on 'b'"),
        (lambda: stage("a", walltime_s=-1), "walltime_s -1"),
        (lambda: stage("a", started=datetime(2026, 1, 1)), "started 2026-01-01T00:00:00 has no"),
        (lambda: WorkflowView("w", "n", ()), "stages is empty"),
        (lambda: WorkflowView("w", "n", (stage("a"), stage("a"))), "stage 'a' repeats"),
        (lambda: WorkflowView("w", "n", (stage("a", "ghost"),)), "names 'ghost'"),
        (
            lambda: build_timeline(WorkflowView("w", "n", (stage("a", "b"), stage("b", "a")))),
            "cycle",
        ),
        (lambda: render_workflow(diamond(), "pdf"), "format 'pdf' is not one of dot"),
        (lambda: build_timeline(diamond(), predicted={"ghost": 1}), "predicted: 'ghost'"),
        (lambda: build_timeline(diamond(), predicted={"prep": -5}), "negative duration -5"),
        (lambda: build_timeline(diamond(), now=datetime(2026, 1, 1)), "now 2026-01-01"),
    ],
)
def test_bad_input_is_a_spec_error_naming_field_and_value(build: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        build()


def test_every_job_state_has_a_colour() -> None:
    assert set(JobState) <= set(STATE_COLOURS)
    assert stage("a", state=JobState.TIMEOUT).state == "TIMEOUT"


def test_every_format_renders() -> None:
    kinds = {fmt: type(render_workflow(diamond(), fmt, now=NOW)) for fmt in FORMATS}
    assert kinds == {"dot": str, "mermaid": str, "json": str, "png": bytes, "svg": bytes}


def test_importing_the_module_loads_neither_networkx_nor_matplotlib() -> None:
    probe = (
        "import sys, hpcbridge.workflows.export; "
        "print(sorted(m for m in ('networkx', 'matplotlib', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
