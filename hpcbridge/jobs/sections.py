"""The sections of a job file below its top level: resources (and GPUs by what they offer),
dependencies, the warning signal, retries, a preview pass and checkpoint/restart."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from hpcbridge.jobs.fields import (
    LINE_BREAK,
    Feature,
    JobReference,
    MemoryMB,
    RetryState,
    ShellText,
    StrictModel,
    Token,
    Walltime,
    _not_blank,
)
from hpcbridge.jobs.units import parse_duration

_SIGNAL = re.compile(
    r"(?:(?P<batch>B):)?(?:SIG)?(?P<name>[A-Z0-9]+)(?:@(?P<seconds>\d+))?", re.ASCII
)


class GpuRequest(StrictModel):
    """GPUs asked for by what they must offer instead of by type (``resources.gpu``): a job
    that needs 40G per GPU or fp64 should not have to know which partition has which model.
    hpcbridge.policy.hardware picks the cheapest partition and type in the site's catalogue
    that offers ``count`` GPUs (counted as ``gpus`` is) with at least ``min_memory`` each
    and every one of ``features``."""

    count: int = Field(1, ge=1)
    min_memory: MemoryMB | None = None
    features: list[Feature] = []


class Resources(StrictModel):
    """What one job asks the scheduler for. Memory is per node, as sbatch --mem means it.

    GPUs are asked for either by type (``gpus``, ``gpu_type``) or by need (``gpu``), which
    hardware matching turns into the former.
    """

    nodes: int = Field(1, ge=1)
    ntasks: int = Field(1, ge=1)
    cpus_per_task: int = Field(1, ge=1)
    memory: MemoryMB | None = None
    gpus: int = Field(0, ge=0)
    gpu_type: Token | None = None
    gpu: GpuRequest | None = None
    walltime: Walltime | None = None

    @field_validator("walltime")
    @classmethod
    def _some_time(cls, walltime: int | None) -> int | None:
        # 0 would drop --time and the site's default alike: Slurm then grants the partition's
        # maximum, the opposite of what was written.
        if walltime is not None and walltime < 1:
            raise ValueError(
                f"{walltime} s is no time to run; give a duration, or leave walltime out for "
                "the site's default"
            )
        return walltime

    @model_validator(mode="after")
    def _gpu_type_needs_gpus(self) -> Resources:
        if self.gpu_type and not self.gpus:
            raise ValueError(f"gpu_type {self.gpu_type!r} is set but gpus is 0")
        if self.gpu and (self.gpus or self.gpu_type):
            raise ValueError(
                "give gpu (GPUs by memory and features, matched to the site's catalogue) or "
                "gpus/gpu_type (GPUs by type), not both"
            )
        return self


DependencyCondition = Literal["after", "afterok", "afterany", "afternotok", "singleton"]
_CONDITIONS = frozenset(get_args(DependencyCondition))


class Dependency(StrictModel):
    """Start only when ``job`` reaches ``condition``; ``singleton`` needs no job."""

    condition: DependencyCondition = "afterok"
    job: JobReference | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # "123" means afterok:123, as a bare id on sbatch's --dependency does not exist.
        if isinstance(value, int):
            return {"job": str(value)}
        if not isinstance(value, str):
            return value
        if value in _CONDITIONS:
            return {"condition": value}
        condition, sep, job = value.partition(":")
        return {"condition": condition, "job": job} if sep else {"job": value}

    @model_validator(mode="after")
    def _job_matches_condition(self) -> Dependency:
        if (self.condition == "singleton") != (self.job is None):
            raise ValueError(
                "singleton takes no job" if self.job else f"{self.condition} needs a job id or name"
            )
        return self


class SignalSpec(StrictModel):
    """A signal sent ``seconds`` before the time limit, to the batch shell by default."""

    name: str = "USR1"
    seconds: int = Field(60, ge=1, le=65535)
    batch_shell: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        # The sbatch --signal spelling, "[B:]SIG[@SECONDS]".
        if not isinstance(value, str):
            return value
        match = _SIGNAL.fullmatch(value.strip().upper())
        if not match:
            raise ValueError(f"{value!r} is not a signal; write it as [B:]USR1[@SECONDS]")
        parsed: dict[str, Any] = {"name": match["name"], "batch_shell": bool(match["batch"])}
        if match["seconds"]:
            parsed["seconds"] = int(match["seconds"])
        return parsed

    @field_validator("name")
    @classmethod
    def _known_signal(cls, name: str) -> str:
        import signal

        bare = name.upper().removeprefix("SIG")
        if not hasattr(signal, f"SIG{bare}"):
            raise ValueError(f"{name!r} is not a signal name")
        return bare


def _backoff_seconds(value: Any) -> Any:
    """A backoff: seconds as a number, "90s", "5m", "1h", or a Slurm-style clock."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    return parse_duration(text)


class RetrySpec(StrictModel):
    """Submit a job again when it ends in one of the ``on`` states (by default the ones that
    are no fault of the job: a node or its boot failing, or memory running out), up to
    ``attempts`` more times, ``backoff`` seconds after it ended, times ``factor`` for each
    further attempt; after OUT_OF_MEMORY its memory is raised by ``memory_factor``. Other
    endings are not retried: a job that fails by itself would fail again."""

    attempts: int = Field(3, ge=1, le=100)
    on: list[RetryState] = ["NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY"]
    backoff: Annotated[int, BeforeValidator(_backoff_seconds)] = Field(60, ge=0)
    factor: float = Field(2.0, ge=1, le=100)
    memory_factor: float = Field(1.5, ge=1, le=100)


class PreviewSpec(StrictModel):
    """A coarse first pass over an array (frames, a sweep): every ``every``-th index from the
    first, or the indices ``first``, go in a preview array at ``level`` (default: the site's
    highest) ahead of the rest, which follow ``after`` it or run ``alongside`` at the job's
    own level. hpcbridge.workflows.preview makes the two arrays a workflow."""

    every: int | None = Field(None, ge=2)
    first: list[int] = []
    then: Literal["after", "alongside"] = "after"
    level: Token | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> PreviewSpec:
        if (self.every is None) == (not self.first):
            raise ValueError("give exactly one of every and first")
        return self


class CheckpointSpec(StrictModel):
    """Checkpoint/restart around a job, done by a bash wrapper in the script (checkpoint.sh.j2).

    The wrapper, not hpcbridge, runs on the compute node, so everything here is what that
    bash needs: ``command`` saves the running job's state into ``$HPCBRIDGE_CHECKPOINT_TMP``
    while the job keeps running; ``restart`` (default: the job's own command) starts from
    ``$HPCBRIDGE_CHECKPOINT``, the newest checkpoint whose manifest verifies. ``signal`` arrives
    ``signal.seconds`` before the time limit, always at the batch shell, where the wrapper traps
    it; it then checkpoints and either requeues the job or exits 0 (``on_limit``) so that the
    next segment of a chain takes over. ``total_runtime`` and ``max_segments`` size such a
    chain (hpcbridge.workflows.segments); the wrapper itself does not read them.
    """

    command: ShellText
    restart: ShellText | None = None
    directory: Annotated[str, AfterValidator(_not_blank)]
    signal: SignalSpec = SignalSpec(name="USR1", seconds=120)
    interval: Walltime | None = None
    keep: int = Field(3, ge=1)
    max_restarts: int = Field(10, ge=0)
    on_limit: Literal["requeue", "exit"] = "requeue"
    total_runtime: Walltime | None = None
    max_segments: int = Field(100, ge=1)

    @field_validator("signal")
    @classmethod
    def _to_batch_shell(cls, signal: SignalSpec) -> SignalSpec:
        # Only the batch shell runs the wrapper's trap; a signal to the job's steps is lost.
        return signal if signal.batch_shell else signal.model_copy(update={"batch_shell": True})

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, interval: int | None) -> int | None:
        if interval is not None and interval < 1:
            raise ValueError("must be at least one second (write MM:SS, e.g. 0:30)")
        return interval

    @field_validator("directory")
    @classmethod
    def _one_line(cls, directory: str) -> str:
        # Checkpoint names and the attempts log are read line by line, by bash and Python.
        if LINE_BREAK.search(directory):
            raise ValueError(f"{directory!r} holds a line break or NUL")
        return directory
