"""Expected versus actual schedule of a workflow's stages, and its critical path.

A :class:`WorkflowView` is a snapshot the workflow store hands over: per stage its latest job,
state, dependencies, requested walltime and the scheduler's submit/start/end times. From it
:func:`build_timeline` derives what the Gantt chart and the exports show. It runs nothing and
asks no scheduler, so a rendering is reproducible from the snapshot and ``now`` alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import mean
from typing import TYPE_CHECKING

from hpcbridge.errors import SpecError
from hpcbridge.jobs.state import JobState

if TYPE_CHECKING:
    import networkx as nx

NOT_SUBMITTED = "NOT_SUBMITTED"
CONDITIONS = ("afterok", "afterany", "afternotok")

# One colour per state, shared by every format: waiting yellow, running blue, done green,
# failed red, cancelled or unknown grey, never submitted white.
_PALETTE = {
    "#ffffff": (NOT_SUBMITTED,),
    "#f2d675": ("PENDING", "REQUEUED", "SUSPENDED", "STOPPED", "SPECIAL_EXIT"),
    "#7fb3e6": ("CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"),
    "#8fd18f": ("COMPLETED",),
    "#ee8a8a": (
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "PREEMPTED",
    ),
    "#c8c8c8": ("CANCELLED", "REVOKED", "UNKNOWN"),
}
STATE_COLOURS = {state: colour for colour, states in _PALETTE.items() for state in states}
_STATES = frozenset(JobState) | {NOT_SUBMITTED}
CRITICAL_COLOUR = "#d62728"

LEGEND = (
    "Expected durations are requested walltimes (an upper bound) unless a runtime prediction "
    "is given; a stage with neither gets the mean of the others' expected durations. Expected "
    "starts follow the actual start and end times of the stages that have run. The critical "
    "path weighs finished stages by their actual duration, the rest by their expected one."
)


@dataclass(frozen=True)
class StageView:
    """One stage as the workflow store last saw it; times are aware UTC datetimes."""

    name: str
    job_id: str | None
    state: str
    depends_on: tuple[tuple[str, str], ...]
    walltime_s: int | None
    submitted: datetime | None
    started: datetime | None
    ended: datetime | None
    note: str = ""

    def __post_init__(self) -> None:
        where = f"stage {self.name!r}"
        if self.state not in _STATES:
            raise SpecError(f"{where}: state {self.state!r} is not a JobState or {NOT_SUBMITTED}")
        for dependency, condition in self.depends_on:
            if condition not in CONDITIONS:
                raise SpecError(
                    f"{where}: condition {condition!r} on {dependency!r} is not one of "
                    f"{', '.join(CONDITIONS)}"
                )
        if self.walltime_s is not None and self.walltime_s < 0:
            raise SpecError(f"{where}: walltime_s {self.walltime_s} is negative")
        for field in ("submitted", "started", "ended"):
            moment: datetime | None = getattr(self, field)
            if moment is not None and moment.utcoffset() is None:
                raise SpecError(f"{where}: {field} {moment.isoformat()} has no time zone")

    @property
    def never_ran(self) -> bool:
        """Ended (cancelled, say, because a dependency failed) without ever starting."""
        return self.started is None and self.ended is not None

    @property
    def actual_duration_s(self) -> int | None:
        """Seconds from start to end, once both are known."""
        if self.started is None or self.ended is None:
            return None
        return _seconds(self.ended - self.started)


@dataclass(frozen=True)
class WorkflowView:
    """A workflow's stages in the order they were declared."""

    workflow_id: str
    name: str
    stages: tuple[StageView, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise SpecError(f"workflow {self.workflow_id!r}: stages is empty")
        names = Counter(stage.name for stage in self.stages)
        for stage in self.stages:
            if names[stage.name] > 1:
                raise SpecError(f"workflow {self.workflow_id!r}: stage {stage.name!r} repeats")
            for dependency, _condition in stage.depends_on:
                if dependency not in names:
                    raise SpecError(
                        f"stage {stage.name!r}: depends_on names {dependency!r}, "
                        "which is not a stage of this workflow"
                    )


@dataclass(frozen=True)
class StageTimeline:
    """A stage with its expected window; the actual one is on :attr:`stage`."""

    stage: StageView
    expected_duration_s: int
    duration_source: str  # "prediction", "walltime", "mean of others" or "unknown" (0 s)
    expected_start: datetime
    expected_end: datetime
    critical: bool


@dataclass(frozen=True)
class Timeline:
    """Everything an export shows: per-stage windows, the critical path, the makespans."""

    view: WorkflowView
    origin: datetime
    now: datetime
    stages: tuple[StageTimeline, ...]
    critical_path: tuple[str, ...]
    critical_length_s: int
    expected_makespan_s: int
    actual_makespan_s: int | None

    @property
    def critical_edges(self) -> frozenset[tuple[str, str]]:
        """The (dependency, dependent) pairs along the critical path."""
        return frozenset(zip(self.critical_path, self.critical_path[1:], strict=False))


def build_timeline(
    view: WorkflowView,
    *,
    now: datetime | None = None,
    predicted: Mapping[str, float] | None = None,
) -> Timeline:
    """The expected schedule of ``view``, re-anchored on whatever has actually happened.

    A stage is expected to start when the last of its dependencies is expected to end (any
    condition waits for the end), and never before its own submission; a stage without
    dependencies starts at its submission, or at the workflow's first submission if it has
    none (``now`` when nothing was submitted). Once a dependency has ended, its actual end
    replaces the expected one; once it has started, its actual start plus its expected
    duration does. So the plan for what is still to come moves as facts arrive, while each
    stage's own expected window stays comparable with its actual one.

    ``predicted`` maps stage names to expected seconds and overrides walltimes, for runtime
    predictions; a walltime is only the upper bound the scheduler enforces.
    """
    import networkx as nx

    now = now or datetime.now(UTC)
    if now.utcoffset() is None:
        raise SpecError(f"now {now.isoformat()} has no time zone")
    graph = dependency_graph(view)
    durations = _expected_durations(view, predicted or {})
    submissions = [stage.submitted for stage in view.stages if stage.submitted is not None]
    origin = min(submissions, default=now)
    by_name = {stage.name: stage for stage in view.stages}
    windows: dict[str, tuple[datetime, datetime]] = {}
    settled: dict[str, datetime] = {}  # when what follows may start: facts over expectations
    for name in nx.topological_sort(graph):
        stage = by_name[name]
        anchors = [settled[dependency] for dependency, _ in stage.depends_on] or [origin]
        if stage.submitted is not None:
            anchors.append(stage.submitted)
        start = max(anchors)
        duration = timedelta(seconds=durations[name][0])
        windows[name] = (start, start + duration)
        if stage.ended is not None:
            settled[name] = stage.ended
        elif stage.started is not None:
            settled[name] = stage.started + duration
        else:
            settled[name] = start + duration

    path, length = _critical_path(graph, view, durations)
    on_path = set(path)
    ends = [stage.ended for stage in view.stages]
    return Timeline(
        view=view,
        origin=origin,
        now=now,
        stages=tuple(
            StageTimeline(
                stage=stage,
                expected_duration_s=durations[stage.name][0],
                duration_source=durations[stage.name][1],
                expected_start=windows[stage.name][0],
                expected_end=windows[stage.name][1],
                critical=stage.name in on_path,
            )
            for stage in view.stages
        ),
        critical_path=tuple(path),
        critical_length_s=length,
        expected_makespan_s=_seconds(max(end for _, end in windows.values()) - origin),
        actual_makespan_s=(
            None
            if any(end is None for end in ends)
            else _seconds(max(end for end in ends if end is not None) - origin)
        ),
    )


def dependency_graph(view: WorkflowView) -> nx.DiGraph[str]:
    """Dependency -> dependent edges carrying their condition; a cycle is a SpecError."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(stage.name for stage in view.stages)
    for stage in view.stages:
        for dependency, condition in stage.depends_on:
            graph.add_edge(dependency, stage.name, condition=condition)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = " -> ".join(edge[0] for edge in nx.find_cycle(graph))
        raise SpecError(f"workflow {view.workflow_id!r}: dependencies form a cycle: {cycle}")
    return graph


def _expected_durations(
    view: WorkflowView, predicted: Mapping[str, float]
) -> dict[str, tuple[int, str]]:
    """Seconds each stage is expected to run, and where that figure came from."""
    names = {stage.name for stage in view.stages}
    for name, seconds in predicted.items():
        if name not in names:
            raise SpecError(f"predicted: {name!r} is not a stage of {view.workflow_id!r}")
        if seconds < 0:
            raise SpecError(f"predicted: stage {name!r} has a negative duration {seconds}")
    known: dict[str, tuple[int, str]] = {}
    for stage in view.stages:
        if stage.name in predicted:
            known[stage.name] = (round(predicted[stage.name]), "prediction")
        elif stage.walltime_s is not None:
            known[stage.name] = (stage.walltime_s, "walltime")
    # A stage with no walltime and no prediction is assumed typical of this workflow.
    fallback = (
        (round(mean(seconds for seconds, _ in known.values())), "mean of others")
        if known
        else (0, "unknown")
    )
    return {stage.name: known.get(stage.name, fallback) for stage in view.stages}


def _critical_path(
    graph: nx.DiGraph[str], view: WorkflowView, durations: Mapping[str, tuple[int, str]]
) -> tuple[list[str], int]:
    """The heaviest dependency chain, each stage weighing its actual or expected duration.

    networkx weighs edges, so each edge carries its target's weight and a virtual source,
    pointing at every stage, carries the first stage's; a stage that ended without running
    weighs nothing. Durations are whole seconds, so a bonus below one second per stage makes
    the longer chain win a tie without outweighing a real second: stages that took no
    measurable time still have a critical path.
    """
    import networkx as nx

    def weight(stage: StageView) -> int:
        if stage.never_ran:
            return 0
        actual = stage.actual_duration_s
        return durations[stage.name][0] if actual is None else actual

    weights = {stage.name: weight(stage) for stage in view.stages}
    tie_break = 1 / (len(weights) + 1)
    source = object()
    weighted: nx.DiGraph[object] = nx.DiGraph()
    weighted.add_edges_from((source, name, {"w": weights[name] + tie_break}) for name in graph)
    weighted.add_edges_from((u, v, {"w": weights[v] + tie_break}) for u, v in graph.edges)
    path = [str(node) for node in nx.dag_longest_path(weighted, weight="w") if node is not source]
    return path, sum(weights[name] for name in path)


def _seconds(delta: timedelta) -> int:
    return round(delta.total_seconds())
