"""What to run, shared by every scheduler: JobSpec and its parts (what became of it: jobs.state).

Values that end up on a scheduler directive line (``#SBATCH --partition=...``) must be single
tokens: schedulers parse those lines with their own, quote-unaware rules, so a space or a quote
there would silently change the job. They are refused here, at the edge, with the field named,
rather than quoted later. Free text (environment values) is quoted by the renderer instead.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from hpcbridge.errors import SpecError
from hpcbridge.jobs.units import format_duration, parse_duration, parse_memory

# Every pattern is ASCII and used with fullmatch: "$" would also match before a final newline,
# and \w alone admits any Unicode letter.
_TOKEN = re.compile(r"[\w.+@=,:%/-]+", re.ASCII)
# An environment variable name, as the shell takes it (also for a sweep file's columns).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What ends a line for bash or for Python's str.splitlines(), and NUL, which bash cannot hold.
_LINE_BREAK = re.compile("[\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# sbatch(1), --array: "0-15", "0,6,16-32", "0-15:4", "0-15%4" (step and a concurrency limit).
_ARRAY = re.compile(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?", re.ASCII)
_SIGNAL = re.compile(
    r"(?:(?P<batch>B):)?(?:SIG)?(?P<name>[A-Z0-9]+)(?:@(?P<seconds>\d+))?", re.ASCII
)


def _single_token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{value!r} must be one word of letters, digits and . _ + @ = , : % / - "
            "(no spaces, quotes or shell characters)"
        )
    return value


Token = Annotated[str, AfterValidator(_single_token)]
ModelT = TypeVar("ModelT", bound=BaseModel)
# Job references may also hold PBS's array brackets ("10[].server", "10[3].server").
_JOB_REFERENCE = re.compile(r"[\w.+@=,:%/\[\]-]+", re.ASCII)


def _job_reference(value: str) -> str:
    if not _JOB_REFERENCE.fullmatch(value):
        raise ValueError(f"{value!r} is not a job id or job name")
    return value


JobReference = Annotated[str, AfterValidator(_job_reference)]
# Slurm hostlists: "node07", "gpu[01-04,09]", "a,b".
_NODE_LIST = re.compile(r"[\w.,\[\]-]+", re.ASCII)


def _node_list(value: str) -> str:
    if not _NODE_LIST.fullmatch(value):
        raise ValueError(f"{value!r} is not a node name or hostlist such as node[01-04]")
    return value


NodeList = Annotated[str, AfterValidator(_node_list)]
# A hardware feature (fp64, nvlink): a word that can stand as a Slurm node feature too.
_FEATURE = re.compile(r"[\w.-]+", re.ASCII)
# sbatch(1), --constraint: node feature names joined by "&" (AND) or "|" (OR); the bracket,
# count and XOR forms are left out until a job needs them.
_CONSTRAINT = re.compile(rf"{_FEATURE.pattern}([&|]{_FEATURE.pattern})*", re.ASCII)


def _feature(value: str) -> str:
    if not _FEATURE.fullmatch(value):
        raise ValueError(f"{value!r} is not a feature name (letters, digits and . _ -)")
    return value


Feature = Annotated[str, AfterValidator(_feature)]


def _constraint(value: str) -> str:
    if not _CONSTRAINT.fullmatch(value):
        raise ValueError(f"{value!r} is not node features joined by & or |, such as fp64&nvlink")
    return value


Constraint = Annotated[str, AfterValidator(_constraint)]
# Endings a job may be retried after (RetrySpec.on): JobState names.
RetryState = Literal[
    "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "FAILED", "PREEMPTED", "CANCELLED"
]
Walltime = Annotated[
    int, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
MemoryMB = Annotated[
    int, BeforeValidator(parse_memory), PlainSerializer(lambda mb: f"{mb}M", return_type=str)
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuRequest(_Model):
    """GPUs asked for by what they must offer instead of by type (``resources.gpu``): a job
    that needs 40G per GPU or fp64 should not have to know which partition has which model.
    hpcbridge.policy.hardware picks the cheapest partition and type in the site's catalogue
    that offers ``count`` GPUs (counted as ``gpus`` is) with at least ``min_memory`` each
    and every one of ``features``."""

    count: int = Field(1, ge=1)
    min_memory: MemoryMB | None = None
    features: list[Feature] = []


class Resources(_Model):
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


class Dependency(_Model):
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


class SignalSpec(_Model):
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


def _runnable(value: str) -> str:
    """Shell text bash can run as written: bash drops NUL bytes from a script, so the job
    would run something other than what was written."""
    if "\x00" in value:
        raise ValueError(f"{value!r} holds a NUL byte, which bash cannot run")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


ShellText = Annotated[str, AfterValidator(_not_blank), AfterValidator(_runnable)]


def _backoff_seconds(value: Any) -> Any:
    """A backoff: seconds as a number, "90s", "5m", "1h", or a Slurm-style clock."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    return parse_duration(text)


class RetrySpec(_Model):
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


class PreviewSpec(_Model):
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


class CheckpointSpec(_Model):
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
        if _LINE_BREAK.search(directory):
            raise ValueError(f"{directory!r} holds a line break or NUL")
        return directory


class JobSpec(_Model):
    """One batch job, independent of the scheduler that will run it."""

    name: Token
    command: Annotated[str, AfterValidator(_runnable)] | None = None
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
    setup: list[Annotated[str, AfterValidator(_runnable)]] = []
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


def validated(model: type[ModelT], data: Any, source: str) -> ModelT:
    """``model`` built from plain data; pydantic's error becomes a SpecError naming each field
    and value, as a user who wrote the YAML can act on it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, source, model)) from exc


def describe_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    """One line per problem: ``field.path: message (got value)``; a misspelt field of
    ``model`` (``memroy``) names the field it most likely meant (``memory``)."""
    lines = [f"{source} is invalid:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and model is not None:
            known = _fields_at(model, error["loc"][:-1])
            close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            message = f"no such field{f'; did you mean {close[0]!r}?' if close else ''}"
        shown = error.get("input")
        got = "" if isinstance(shown, dict) or repr(shown) in message else f" (got {shown!r})"
        lines.append(f"  {field}: {message}{got}")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at ``path`` inside ``model`` (through lists,
    dicts and optional fields), or none when the path leaves the models."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return []
        if isinstance(part, int):
            continue  # a list index: the same model as the list's
        field = current.model_fields.get(part)
        current = None if field is None else _model_in(field.annotation)
    return [] if current is None else list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
