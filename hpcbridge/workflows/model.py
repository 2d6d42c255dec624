"""A workflow: named stages whose ``depends_on`` name each other, checked whole.

A workflow is checked whole before anything is submitted, because a cycle or a misspelt stage
found halfway would leave a half-submitted DAG behind (workflows.run submits it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator, model_validator

from hpcbridge.errors import SpecError
from hpcbridge.jobs.fields import Token
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.validation import validated

if TYPE_CHECKING:
    import networkx as nx


StageCondition = Literal["afterok", "afterany", "afternotok"]
# What a scenario's stages find in their environment (hpcbridge.workflows.run sets them).
METRICS_FILE_ENV = "HPCBRIDGE_METRICS_FILE"
CAMPAIGN_ENV = "HPCBRIDGE_CAMPAIGN"
SCENARIO_ENV = "HPCBRIDGE_SCENARIO"
STAGE_CONDITIONS: tuple[StageCondition, ...] = ("afterok", "afterany", "afternotok")


class Campaign(BaseModel):
    """Which campaign a workflow is a scenario of, and where its jobs write their results.

    The metric file is JSON lines that running jobs append to (``$HPCBRIDGE_METRICS_FILE``)
    and ``hpcbridge priority rerank`` reads; absolute, because the jobs run in their own
    working directories and the rerank in yet another.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Token
    scenario: Token
    metrics: Path

    @field_validator("metrics")
    @classmethod
    def _absolute(cls, metrics: Path) -> Path:
        if not metrics.is_absolute():
            raise ValueError(f"{str(metrics)!r} must be an absolute path")
        return metrics

    def env(self) -> dict[str, str]:
        """What each stage of the scenario gets in its environment."""
        return {
            METRICS_FILE_ENV: str(self.metrics),
            CAMPAIGN_ENV: self.name,
            SCENARIO_ENV: self.scenario,
        }


class Workflow(BaseModel):
    """Stages (JobSpecs) whose ``depends_on`` entries name other stages of the same workflow.

    A dependency is written as for a job (``prep``, ``afterany:train``, or
    ``{job: train, condition: afternotok}``) but names a stage; ``afterok`` is the default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Token
    stages: tuple[JobSpec, ...]
    campaign: Campaign | None = None
    # When the whole workflow must be done: every stage without an earlier deadline of its
    # own gets it (Slurm --deadline), and ``workflow submit`` checks it can be met.
    deadline: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _deadline_to_stages(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("deadline") is None:
            return data
        stages = data.get("stages")
        if isinstance(stages, list | tuple):
            data = {**data, "stages": [_with_deadline(stage, data["deadline"]) for stage in stages]}
        return data

    @field_validator("name")
    @classmethod
    def _file_name(cls, name: str) -> str:
        # The workflow id, and so its state file's name, starts with the workflow's name.
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} must not contain '/' or start with '.'")
        return name

    @model_validator(mode="after")
    def _valid_graph(self) -> Workflow:
        check_stages(self.stages)
        check_acyclic(self)
        for stage in self.stages:
            if self.deadline and stage.deadline and stage.deadline > self.deadline:
                raise ValueError(
                    f"stage {stage.name}: its deadline {stage.deadline} is after the "
                    f"workflow's {self.deadline}"
                )
        return self

    @classmethod
    def parse(cls, data: Any, *, source: str = "workflow") -> Workflow:
        """Validate plain data; the error names the stage field, or the stages in a cycle."""
        return validated(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Workflow:
        """Load a workflow file; relative stage scripts are taken relative to it.

        Without a ``name`` the file's stem names the workflow.
        """
        file = Path(path)
        try:
            with file.open() as stream:  # a stream: YAML errors then name the file
                data = yaml.safe_load(stream)
        except OSError as exc:
            raise SpecError(f"cannot read workflow file {file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SpecError(f"workflow file {file} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
            raise SpecError(f"workflow file {file} must hold a mapping with a list of stages")
        data.setdefault("name", file.stem)
        for stage in data["stages"]:
            script = stage.get("script") if isinstance(stage, dict) else None
            if isinstance(script, str) and not Path(script).is_absolute():
                stage["script"] = str(file.parent / script)
        return cls.parse(data, source=f"workflow file {file}")

    @cached_property
    def by_name(self) -> dict[str, JobSpec]:
        """Stages by name (stage names are unique)."""
        return {stage.name: stage for stage in self.stages}

    def stage(self, name: str) -> JobSpec:
        """The stage of that name."""
        if name not in self.by_name:
            raise SpecError(f"workflow {self.name} has no stage {name!r}")
        return self.by_name[name]

    @cached_property
    def graph(self) -> nx.DiGraph[str]:
        """Edges run from a stage to the stages that wait on it."""
        import networkx as nx

        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(self.by_name)
        graph.add_edges_from(
            (parent, stage.name) for stage in self.stages for parent, _ in stage_dependencies(stage)
        )
        return graph

    @cached_property
    def stage_order(self) -> tuple[str, ...]:
        """Stage names, each after every stage it depends on (NetworkXUnfeasible: a cycle)."""
        import networkx as nx

        return tuple(nx.topological_sort(self.graph))

    def order(self) -> list[str]:
        """Stage names, each after every stage it depends on."""
        return list(self.stage_order)

    def stage_env(self, stage: JobSpec) -> dict[str, str]:
        """The stage's environment, with its campaign's variables over any of the same name."""
        return {**stage.env, **self.campaign.env()} if self.campaign else stage.env

    def job_name(self, stage: str) -> str:
        """The scheduler's job name of a stage: ``<workflow>.<stage>``, one token."""
        return f"{self.name}.{stage}"


def stage_dependencies(stage: JobSpec) -> Iterator[tuple[str, StageCondition]]:
    """(stage name, condition) of each dependency; check_stages has vouched for both."""
    for dependency in stage.depends_on:
        if dependency.job is not None and dependency.condition in STAGE_CONDITIONS:
            yield dependency.job, dependency.condition


def check_stages(stages: Sequence[JobSpec]) -> None:
    """Refuse duplicate names, unknown conditions and missing stages, naming them."""
    if not stages:
        raise ValueError("a workflow needs at least one stage")
    duplicates = [name for name, count in Counter(s.name for s in stages).items() if count > 1]
    if duplicates:
        raise ValueError(f"stage names must be unique; used more than once: {duplicates}")
    names = {stage.name for stage in stages}
    for stage in stages:
        for dependency in stage.depends_on:
            if dependency.condition not in STAGE_CONDITIONS:
                raise ValueError(
                    f"stage {stage.name!r}: depends_on condition {dependency.condition!r} is "
                    f"not one of {', '.join(STAGE_CONDITIONS)}"
                )
            if dependency.job not in names:
                raise ValueError(
                    f"stage {stage.name!r} depends on {dependency.job!r}, which is not a "
                    "stage of this workflow"
                )


def check_acyclic(workflow: Workflow) -> None:
    """Refuse a cycle, naming its stages in order (sorting once both checks and orders)."""
    import networkx as nx

    try:
        workflow.stage_order  # noqa: B018  (computed and cached here)
    except nx.NetworkXUnfeasible:
        cycle = [edge[0] for edge in nx.find_cycle(workflow.graph)]
        raise ValueError(
            f"stages depend on each other in a cycle: {' -> '.join([*cycle, cycle[0]])}"
        ) from None


def _with_deadline(stage: Any, deadline: Any) -> Any:
    """A stage given the workflow's deadline unless it has one of its own."""
    if isinstance(stage, dict) and stage.get("deadline") is None:
        return {**stage, "deadline": deadline}
    if isinstance(stage, JobSpec) and stage.deadline is None:
        return {**stage.model_dump(exclude_unset=True), "deadline": deadline}
    return stage
