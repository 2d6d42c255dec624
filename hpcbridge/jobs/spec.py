"""What to run, shared by every scheduler: JobSpec (what became of it: jobs.state).

Its field types are in :mod:`hpcbridge.jobs.fields`, its sections (resources, dependencies,
signal, retry, preview, checkpoint) in :mod:`hpcbridge.jobs.sections`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from hpcbridge.errors import SpecError
from hpcbridge.jobs.fields import (
    ENV_NAME,
    Constraint,
    NodeList,
    Runnable,
    StrictModel,
    Token,
)
from hpcbridge.jobs.sections import (
    CheckpointSpec,
    Dependency,
    PreviewSpec,
    Resources,
    RetrySpec,
    SignalSpec,
)
from hpcbridge.jobs.validation import validated

# sbatch(1), --array: "0-15", "0,6,16-32", "0-15:4", "0-15%4" (step and a concurrency limit).
_ARRAY = re.compile(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?", re.ASCII)


class JobSpec(StrictModel):
    """One batch job, independent of the scheduler that will run it."""

    name: Token
    command: Runnable | None = None
    script: Path | None = None
    resources: Resources = Resources()
    partition: Token | None = None
    account: Token | None = None
    qos: Token | None = None
    array: str | None = None
    depends_on: list[Dependency] = []
    requeue: bool | None = None
    signal: SignalSpec | None = None
    begin: datetime | None = None
    # ``begin: cheapest`` in a job file: start when power costs least (the site's energy
    # tariff) and the job still meets its deadline; hpcbridge.policy.energy sets ``begin``.
    begin_cheapest: bool = False
    deadline: datetime | None = None
    nice: int | None = Field(None, ge=-10000, le=10000)
    priority: Token | None = None  # a level of the site (SiteConfig.priorities): QOS and nice
    env: dict[str, str] = {}
    workdir: Token | None = None
    stdout: Token | None = None
    stderr: Token | None = None
    modules: list[Token] = []
    setup: list[Runnable] = []
    checkpoint: CheckpointSpec | None = None
    preview: PreviewSpec | None = None
    retry: RetrySpec | None = None
    # Where each array task writes its result ("frames/f{index:04d}.png", relative to
    # workdir): a task is done when its file is there and not empty (workflow frames).
    outputs: str | None = None
    # Submitted held (sbatch --hold, qsub -h): it waits until released, as a budget hold does.
    hold: bool = False
    # Nodes the job must not run on (sbatch --exclude): set by workflow resume after a node
    # failure. PBS's qsub and the local backend have no such request and refuse it.
    exclude_nodes: NodeList | None = None
    # Node features the job's nodes must have (sbatch --constraint): set by hardware matching
    # when the site's catalogue says its GPU features are Slurm node features. PBS's qsub and
    # the local backend have no such request and refuse it.
    constraint: Constraint | None = None
    # Preemption (SiteConfig.preemption): ``protect`` sends the job where the scheduler never
    # preempts it; a job that may be preempted needs a checkpoint section, unless it says
    # its work may be lost.
    protect: bool = False
    preemptible_without_checkpoint: bool = False

    @field_validator("array")
    @classmethod
    def _array_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _ARRAY.fullmatch(value):
            raise ValueError(f"{value!r} is not an array range such as 1-100%10 or 1,3,5-7")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if "\x00" in value:
                raise ValueError(f"{key}: {value!r} holds a NUL byte, which no variable can hold")
        return env

    @model_validator(mode="before")
    @classmethod
    def _cheapest_begin(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("begin") == "cheapest":
            return {**data, "begin": None, "begin_cheapest": True}
        return data

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int | dict) else value

    @model_validator(mode="after")
    def _command_xor_script(self) -> JobSpec:
        if (self.command is None) == (self.script is None):
            raise ValueError("give exactly one of command or script")
        if self.begin and self.deadline and self.deadline <= self.begin:
            raise ValueError(f"deadline {self.deadline} is not after begin {self.begin}")
        self._check_preview()
        if self.checkpoint is not None:
            if self.signal is not None and self.signal != self.checkpoint.signal:
                raise ValueError(
                    "signal: the checkpoint wrapper owns the warning signal; set "
                    "checkpoint.signal instead"
                )
            if self.requeue is False and self.checkpoint.on_limit == "requeue":
                raise ValueError(
                    "requeue is false but checkpoint.on_limit is requeue; a checkpointed job "
                    "must be requeueable (or set on_limit: exit)"
                )
        return self

    def _check_preview(self) -> None:
        if self.outputs is not None:
            try:
                self.outputs.format(index=0)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"outputs: {self.outputs!r} is not a pattern with {{index}} only ({exc})"
                ) from None
            if "{index" not in self.outputs:
                raise ValueError(f"outputs: {self.outputs!r} must hold {{index}}")
            if not Path(self.outputs).is_absolute() and self.workdir is None:
                raise ValueError("outputs: a relative pattern needs a workdir to be found in")
        if self.preview is None:
            return
        if self.array is None:
            raise ValueError("preview: only an array has a coarse first pass; give array")
        unknown = sorted(set(self.preview.first) - set(self.array_indices()))
        if unknown:
            raise ValueError(f"preview.first: {unknown} are not indices of array {self.array}")

    @property
    def warning_signal(self) -> SignalSpec | None:
        """The signal sent before the time limit: the job's own, or its checkpoint wrapper's."""
        return self.signal or (self.checkpoint.signal if self.checkpoint else None)

    @property
    def requeue_flag(self) -> bool | None:
        """``requeue`` as given; a checkpointed job is requeueable unless it says otherwise."""
        if self.requeue is None and self.checkpoint is not None:
            return True
        return self.requeue

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobSpec:
        """Load a job file; a relative ``script`` is taken relative to the job file."""
        import yaml  # only job files need it

        job_path = Path(path)
        try:
            with job_path.open() as stream:  # a stream: YAML errors then name the file
                data = yaml.safe_load(stream)
        except OSError as exc:
            raise SpecError(f"cannot read job file {job_path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SpecError(f"job file {job_path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"job file {job_path} must hold a mapping of job fields")
        if isinstance(data.get("script"), str) and not Path(data["script"]).is_absolute():
            data["script"] = str(job_path.parent / data["script"])
        return cls.parse(data, source=str(job_path))

    @classmethod
    def parse(cls, data: Any, *, source: str = "job spec") -> JobSpec:
        """Validate plain data, turning pydantic's error into one that names field and value."""
        return validated(cls, data, source)

    def array_indices(self) -> list[int]:
        """The task indices of ``array`` in order, without the %limit."""
        if self.array is None:
            return []
        indices: list[int] = []
        for part in self.array.partition("%")[0].split(","):
            bounds, _, step = part.partition(":")
            first, _, last = bounds.partition("-")
            indices.extend(range(int(first), int(last or first) + 1, int(step or 1)))
        return indices

    def array_limit(self) -> int | None:
        """How many array tasks may run at once, if limited."""
        if self.array is None or "%" not in self.array:
            return None
        return int(self.array.partition("%")[2])
