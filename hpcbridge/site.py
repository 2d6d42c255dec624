"""Site configs: one validated YAML file per cluster, describing how to reach it and its limits.

Limits are checked before submission so a user hears "walltime 3-00:00:00 exceeds partition
debug's 1:00:00" from us at once, instead of a terse refusal from the controller later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hpcbridge.errors import ConfigError, SpecError
from hpcbridge.jobs.spec import (
    Feature,
    JobSpec,
    MemoryMB,
    Token,
    Walltime,
    describe_validation_error,
)
from hpcbridge.jobs.units import format_duration
from hpcbridge.resources import data_dir


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuOffer(_Config):
    """One kind of GPU node in a partition's catalogue, what hardware matching chooses from.

    ``type`` is the scheduler's name for the model: Slurm's gres type (``gpu:TYPE:N``), or on
    PBS the value of the site's ``pbs.gpu_type_resource``. ``memory`` is per GPU; ``cost``
    is relative (per GPU), only compared with the other entries. ``features`` are what jobs
    ask for; with ``node_features`` they are also Slurm node features of these nodes, so the
    features a job asks for become its ``--constraint`` (without it they are only matched:
    naming the type is then what lands the job on such GPUs).
    """

    type: Token
    memory: MemoryMB
    features: list[Feature] = []
    per_node: int = Field(ge=1)
    cost: float = Field(1.0, ge=0)
    node_features: bool = False


class PartitionConfig(_Config):
    """Limits of one partition (Slurm) or queue (PBS), and the GPUs its nodes carry: names
    alone (``gpu_types``), or a ``catalogue`` for hardware matching."""

    max_walltime: Walltime | None = None
    default_walltime: Walltime | None = None
    max_nodes: int | None = Field(None, ge=1)
    max_gpus: int | None = Field(None, ge=0)
    gpu_types: list[Token] = []
    catalogue: list[GpuOffer] = []

    @model_validator(mode="after")
    def _types_in_one_place(self) -> PartitionConfig:
        if self.gpu_types and self.catalogue:
            raise ValueError("give gpu_types or a catalogue, not both: the catalogue names types")
        return self

    @property
    def known_gpu_types(self) -> list[str]:
        """The GPU types a job may name here (none known: any)."""
        return self.gpu_types or list(dict.fromkeys(offer.type for offer in self.catalogue))


class LocalTransportConfig(_Config):
    """Run scheduler commands on this machine."""

    kind: Literal["local"] = "local"
    command_timeout: float = Field(120.0, gt=0)


class SshTransportConfig(_Config):
    """Run scheduler commands on a login node over SSH (``pip install 'hpcbridge[ssh]'``).

    Like ``ssh host``: whatever is left out here (port, user, key, jump host) comes from
    ``~/.ssh/config`` for ``host``. Host keys are checked against ``known_hosts``; an unknown
    host is refused unless ``host_key_policy`` is ``accept-new`` (trust on first use). There
    is no password field on purpose: log in with a key file or ssh-agent.
    """

    kind: Literal["ssh"]
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    host_key_policy: Literal["reject", "accept-new"] = "reject"
    proxy_jump: str | None = None
    ssh_config: Path | None = None
    connect_timeout: float = Field(15.0, gt=0)
    command_timeout: float = Field(120.0, gt=0)
    keepalive_interval: int = Field(30, ge=0)
    # What one command may print (stdout and stderr together) before it is stopped: a login
    # node's memory is shared, and a runaway squeue or sacct would otherwise take it all.
    max_output_mb: int = Field(256, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_passwords(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"password", "passphrase"} & data.keys():
            raise ValueError(
                "passwords are never stored in site configs; log in with a key "
                "(identity_file, or IdentityFile in ~/.ssh/config) or through ssh-agent"
            )
        return data

    @field_validator("host")
    @classmethod
    def _host_alone(cls, host: str) -> str:
        if "@" in host or any(char.isspace() for char in host):
            raise ValueError(f"{host!r} is not a host name; give the user as `user:`")
        return host

    @field_validator("identity_file", "known_hosts", "ssh_config")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()


def _transport_kind(data: Any) -> str:
    """``kind`` picks the transport; configs written before SSH existed may leave it out."""
    if isinstance(data, dict):
        return str(data.get("kind", "local"))
    return str(getattr(data, "kind", "local"))


TransportConfig = Annotated[
    Annotated[LocalTransportConfig, Tag("local")] | Annotated[SshTransportConfig, Tag("ssh")],
    Discriminator(_transport_kind),
]


class PbsOptions(_Config):
    """What a PBS server can do: JSON qstat output (OpenPBS, PBS Pro 19+), job history."""

    json_output: bool = True
    job_history: bool = True
    gpu_type_resource: Token | None = None


class SlurmOptions(_Config):
    """How hpcbridge talks to Slurm: its command-line tools (``cli``, the default), or
    slurmrestd (``rest``) for the calls made most often, without a process per call.

    The REST driver authenticates with a JWT: the one in the ``token_env`` variable if it is
    set (a token the site hands out), else one ``scontrol token`` makes for
    ``token_lifespan`` seconds, renewed shortly before it expires.
    """

    driver: Literal["cli", "rest"] = "cli"
    rest_url: str = Field("http://127.0.0.1:6820", pattern=r"^https?://[^\s/]+(/\S*)?$")
    token_env: str = Field("SLURM_JWT", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_lifespan: int = Field(3600, ge=2)
    rest_timeout: float = Field(30.0, gt=0)


class PreemptionOptions(_Config):
    """Which jobs the scheduler may preempt, and where runs that must not be preempted go.

    Slurm preempts by QOS (``PreemptType=preempt/qos``) or by partition
    (``preempt/partition_prio``); ``by`` says which of the two ``preemptible`` and
    ``protected`` name. A job asking for ``protect: true``, or longer than
    ``protect_longer_than``, is given the ``protected`` one; a job left in a preemptible one
    must carry a checkpoint section (or ``preemptible_without_checkpoint: true``), since a
    preemption otherwise throws its work away. The scheduler does the preempting; this only
    decides where jobs are sent.
    """

    by: Literal["qos", "partition"] = "qos"
    preemptible: list[Token] = []
    protected: Token | None = None
    protect_longer_than: Walltime | None = None

    def route(self, spec: JobSpec, asked: JobSpec, site: str) -> JobSpec:
        """``spec`` (defaults applied) sent where these rules want it; ``asked`` is the spec
        as given, to tell a QOS the user chose from one a default or a level chose."""
        field = self.by
        walltime = spec.resources.walltime
        too_long = bool(
            self.protect_longer_than and walltime and walltime > self.protect_longer_than
        )
        if spec.protect or too_long:
            chosen = getattr(asked, field)
            if chosen in self.preemptible:
                limit = format_duration(self.protect_longer_than or 0)
                why = "protect: true" if spec.protect else f"longer than {limit}"
                raise SpecError(
                    f"{field}: {chosen!r} may be preempted on site {site}, but the job is to be "
                    f"protected ({why}); leave {field} out or drop the protection"
                )
            if self.protected is not None:
                return spec.model_copy(update={field: self.protected})
            return spec
        tier = getattr(spec, field)
        unsaved = spec.checkpoint is None and not spec.preemptible_without_checkpoint
        if tier in self.preemptible and unsaved:
            raise SpecError(
                f"{field}: {tier!r} jobs may be preempted on site {site} "
                "(preemption.preemptible) and this one has no checkpoint section, so a "
                "preemption would lose its work: add one, or set "
                "preemptible_without_checkpoint: true"
            )
        return spec


class PriorityLevel(_Config):
    """What one priority level asks of the scheduler: a QOS and/or a nice value on Slurm; on
    PBS the nice value alone, as ``qsub -p``/``qalter -p`` of its negation."""

    qos: Token | None = None
    nice: int | None = Field(None, ge=-10000, le=10000)


class DeadlineStep(_Config):
    """Queued jobs of an account with a deadline rise to ``level`` once the slack (time left
    before the deadline - the predicted run time of the account's unfinished work) falls
    below ``slack_below``."""

    slack_below: Walltime
    level: Token


class PriorityOptions(_Config):
    """The site's priority levels, lowest first (the order written), and who gets which.

    A job's level is the one it asks for, else its account's, else ``default``; a QOS or nice
    the job sets itself wins over its level's. ``deadlines`` (account -> when its work is
    due; the ledger's, set with ``priority deadline``, win) raise an account's queued jobs
    by ``deadline_steps``; without steps, to the highest level below a day of slack.
    """

    levels: dict[Token, PriorityLevel] = {}
    default: Token | None = None
    accounts: dict[Token, Token] = {}
    deadlines: dict[Token, AwareDatetime] = {}
    deadline_steps: list[DeadlineStep] | None = None

    @model_validator(mode="after")
    def _known_levels(self) -> PriorityOptions:
        named = [("priorities.default", self.default)] + [
            (f"priorities.accounts.{account}", level) for account, level in self.accounts.items()
        ]
        named += [
            (f"priorities.deadline_steps[{index}].level", step.level)
            for index, step in enumerate(self.deadline_steps or ())
        ]
        for where, level in named:
            if level is not None and level not in self.levels:
                raise ValueError(f"{where}: {level!r} is not a level ({self._level_names()})")
        if self.deadlines and not self.levels:
            raise ValueError("priorities.deadlines: deadlines raise levels; define levels first")
        return self

    def level(self, name: str, site: str) -> PriorityLevel:
        """The level called ``name``; the error names the levels there are."""
        if name not in self.levels:
            raise SpecError(
                f"priority: {name!r} is not a level of site {site} ({self._level_names()})"
            )
        return self.levels[name]

    def steps(self) -> list[DeadlineStep]:
        """The deadline steps, the default one when the site gives none."""
        if self.deadline_steps is not None:
            return self.deadline_steps
        if not self.levels:
            return []
        # Validated like the config's own steps: a bare number there means minutes.
        return [
            DeadlineStep.model_validate({"slack_below": "24:00:00", "level": [*self.levels][-1]})
        ]

    def level_of(self, qos: str | None, nice: int | None) -> str | None:
        """The level a job's QOS and nice stand for: the one whose knobs all match (a knob a
        level leaves unset matches anything), the most specific first; None if none does."""
        matches = [
            (sum(knob is not None for knob in (level.qos, level.nice)), index, name)
            for index, (name, level) in enumerate(self.levels.items())
            if level.qos in (None, qos) and level.nice in (None, nice)
        ]
        return max(matches)[2] if matches else None

    def _level_names(self) -> str:
        return ", ".join(self.levels) or "it defines none"


class BudgetLimit(_Config):
    """Core-hours and GPU-hours one user of an account may use per period (None: no limit)."""

    core_hours: float | None = Field(None, ge=0)
    gpu_hours: float | None = Field(None, ge=0)


class AccountBudget(BudgetLimit):
    """One account's budget: the ledger's allocation covering now (``period: allocation``,
    raised with ``hpcbridge budget allocate``), or ``core_hours``/``gpu_hours`` per rolling
    month (``period: month``, the last 30 days); ``users`` limit single users within it."""

    period: Literal["allocation", "month"] = "allocation"
    users: dict[Token, BudgetLimit] = {}

    @model_validator(mode="after")
    def _limit_from_one_place(self) -> AccountBudget:
        given = self.core_hours is not None or self.gpu_hours is not None
        if self.period == "allocation" and given:
            raise ValueError(
                "core_hours/gpu_hours: with period allocation the limit is the ledger's "
                "allocation; give them with period: month, or leave them out"
            )
        if self.period == "month" and not given:
            raise ValueError("period month needs core_hours and/or gpu_hours")
        return self


class BudgetOptions(_Config):
    """Budgets checked at submit (hpcbridge.policy.budget): a job whose worst case, with what
    the account's queued and running jobs have committed, exceeds what is left is refused,
    or with ``on_exhausted: hold`` submitted held until ``hpcbridge budget release`` finds
    room; a warning once ``warn_at`` percent would be used."""

    accounts: dict[Token, AccountBudget] = {}
    on_exhausted: Literal["refuse", "hold"] = "refuse"
    warn_at: float = Field(80.0, gt=0, le=100)


class LocalOptions(_Config):
    """The embedded local backend: ``max_running`` tasks at once (default: one per CPU); the
    rest wait PENDING with reason Resources, as a real scheduler holds jobs it has no room for."""

    max_running: int | None = Field(None, ge=1)


class LedgerOptions(_Config):
    """How ``hpcbridge ledger sync`` reads this cluster's accounting.

    Durations are Slurm-style ("1-00:00:00", "30:00"; a bare number is minutes, as in sbatch;
    the defaults below are in seconds, as Python holds them). ``window`` bounds what one
    sacct call asks slurmdbd for; ``overlap`` re-reads the end of the last sync, for records
    written late; ``first_sync`` is how far back a new ledger starts.
    """

    window: Walltime = 86_400
    overlap: Walltime = 3_600
    first_sync: Walltime = 30 * 86_400
    pbs_source: Literal["log", "qstat"] = "log"
    pbs_accounting_dir: str = "/var/spool/pbs/server_priv/accounting"
    pbs_server_timezone: str | None = None  # the zone PBS's log stamps and file names are in

    @field_validator("pbs_server_timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{name!r} is not an IANA time zone name") from exc
        return name


class ClientShare(_Config):
    """A client's (an account's) guaranteed ``share`` of the cluster's cores, in percent; idle
    share may be borrowed by others, and this client may use up to ``max`` percent (None: as
    much as is idle)."""

    share: float = Field(gt=0, le=100)
    max: float | None = Field(None, gt=0, le=100)

    @model_validator(mode="after")
    def _max_covers_share(self) -> ClientShare:
        if self.max is not None and self.max < self.share:
            raise ValueError(f"max ({self.max:g}) is below the guaranteed share ({self.share:g})")
        return self


class TariffWindow(_Config):
    """A stretch of the day (``start`` to ``end``, HH:MM on the tariff's clock; past midnight
    when end is earlier) at ``price`` per kWh."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    price: float = Field(ge=0)


class EnergyOptions(_Config):
    """What power costs, for ``begin: cheapest`` and energy estimates: ``price`` per kWh
    outside the ``windows`` (off-peak hours and the like, on the ``timezone``'s clock), and
    the power of a busy core and GPU, which estimates a job's energy where the cluster does
    not measure it."""

    price: float = Field(0.0, ge=0)
    windows: list[TariffWindow] = []
    currency: str = "EUR"
    timezone: str = "UTC"
    watts_per_core: float = Field(10.0, ge=0)
    watts_per_gpu: float = Field(300.0, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{name!r} is not an IANA time zone name") from exc
        return name


class DeadlineOptions(_Config):
    """How a deadline is checked before submission: ``margin`` is the safety margin (a share
    of the time to the deadline that the estimate must leave free); ``on_risk`` says whether
    a job at risk only gets the advice of a higher level or is raised to it."""

    margin: float = Field(0.10, ge=0, lt=1)
    on_risk: Literal["warn", "raise"] = "warn"


class SiteConfig(_Config):
    """How to drive one cluster."""

    name: str
    scheduler: Literal["slurm", "pbs", "local"]
    transport: TransportConfig = LocalTransportConfig()
    cluster_name: str | None = None
    default_partition: Token | None = None
    default_account: Token | None = None
    partitions: dict[str, PartitionConfig] = {}
    template_dir: Path | None = None
    state_dir: Path | None = None
    submit_retries: int = Field(4, ge=1, le=20)
    slurm: SlurmOptions = SlurmOptions()
    preemption: PreemptionOptions = PreemptionOptions()
    pbs: PbsOptions = PbsOptions()
    local: LocalOptions = LocalOptions()
    ledger: LedgerOptions = LedgerOptions()
    priorities: PriorityOptions = PriorityOptions()
    budgets: BudgetOptions = BudgetOptions()
    deadlines: DeadlineOptions = DeadlineOptions()
    energy: EnergyOptions = EnergyOptions()
    clients: dict[Token, ClientShare] = {}

    @model_validator(mode="after")
    def _pbs_has_no_qos(self) -> SiteConfig:
        if self.scheduler == "pbs":
            for name, level in self.priorities.levels.items():
                if level.qos is not None:
                    raise ValueError(
                        f"priorities.levels.{name}.qos: PBS has no QOS; give the level a nice "
                        "value (qsub -p is its negation)"
                    )
        return self

    @model_validator(mode="after")
    def _pbs_preempts_by_queue(self) -> SiteConfig:
        uses_qos = self.preemption.preemptible or self.preemption.protected
        if self.scheduler == "pbs" and self.preemption.by == "qos" and uses_qos:
            raise ValueError(
                "preemption.by: PBS has no QOS; its scheduler preempts by queue priority "
                "(sched_config preempt_queue_prio), so name queues with by: partition"
            )
        return self

    @model_validator(mode="after")
    def _catalogue_fits_scheduler(self) -> SiteConfig:
        for name, partition in self.partitions.items():
            for index, offer in enumerate(partition.catalogue):
                where = f"partitions.{name}.catalogue[{index}]"
                if offer.node_features and self.scheduler != "slurm":
                    raise ValueError(
                        f"{where}.node_features: features become sbatch --constraint, which "
                        f"{self.scheduler} has no equivalent of"
                    )
                if self.scheduler == "pbs" and self.pbs.gpu_type_resource is None:
                    raise ValueError(
                        f"{where}: a matched type is asked of PBS through the site's GPU "
                        "model resource; set pbs.gpu_type_resource"
                    )
        return self

    @model_validator(mode="after")
    def _rest_is_slurm(self) -> SiteConfig:
        if self.slurm.driver == "rest" and self.scheduler != "slurm":
            raise ValueError(f"slurm.driver: rest drives slurmrestd, not {self.scheduler}")
        return self

    @model_validator(mode="after")
    def _shares_fit(self) -> SiteConfig:
        total = sum(client.share for client in self.clients.values())
        if total > 100:
            shares = ", ".join(f"{name} {client.share:g}" for name, client in self.clients.items())
            raise ValueError(f"clients: guaranteed shares add up to {total:g}% ({shares})")
        return self

    @classmethod
    def load(cls, name_or_path: str | Path) -> SiteConfig:
        """Read a site by file path, or by name from the user's and the packaged site folders."""
        path = find_site_file(name_or_path)
        try:
            with path.open() as stream:  # a stream: YAML errors then name the file
                data = yaml.safe_load(stream)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read site config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"site config {path} must hold a mapping")
        data.setdefault("name", path.stem)
        for key in ("template_dir", "state_dir"):
            if isinstance(data.get(key), str):
                data[key] = str((path.parent / os.path.expanduser(data[key])).resolve())
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, f"site config {path}", cls)) from exc

    def prepare(self, spec: JobSpec) -> JobSpec:
        """The spec with this site's defaults filled in, checked against partition limits.

        GPUs asked for by need (``resources.gpu``) must have been matched to a partition and
        type first: that is policy (hpcbridge.policy.hardware), above this layer.
        """
        if spec.resources.gpu is not None:
            raise SpecError(
                f"job {spec.name}: resources.gpu asks for GPUs by memory and features; match "
                "it to a partition and type first with hpcbridge.policy.hardware.place (the "
                "CLI's render and submit do)"
            )
        partition_name = spec.partition or self.default_partition
        partition = self._partition(partition_name)
        resources = spec.resources
        if resources.walltime is None and partition and partition.default_walltime:
            resources = resources.model_copy(update={"walltime": partition.default_walltime})
        account = spec.account or self.default_account
        prepared = spec.model_copy(
            update={"partition": partition_name, "account": account, "resources": resources}
        )
        level_name = spec.priority or self.priorities.accounts.get(account or "")
        level_name = level_name or self.priorities.default
        if level_name is not None:
            level = self.priorities.level(level_name, self.name)
            prepared = prepared.model_copy(
                update={
                    "priority": level_name,
                    "qos": spec.qos or level.qos,
                    "nice": level.nice if spec.nice is None else spec.nice,
                }
            )
        prepared = self.preemption.route(prepared, spec, self.name)
        if prepared.partition != partition_name:  # protected by partition: its limits apply
            partition = self._partition(prepared.partition)
        if partition is not None:
            _check_limits(prepared, partition)
        return prepared

    def _partition(self, name: str | None) -> PartitionConfig | None:
        if name is None or not self.partitions:
            return None
        if name not in self.partitions:
            known = ", ".join(sorted(self.partitions))
            raise SpecError(f"partition: {name!r} is not a partition of site {self.name} ({known})")
        return self.partitions[name]


def _check_limits(spec: JobSpec, partition: PartitionConfig) -> None:
    resources = spec.resources
    where = f"partition {spec.partition}"
    if (
        partition.max_walltime
        and resources.walltime
        and resources.walltime > partition.max_walltime
    ):
        raise SpecError(
            f"resources.walltime: {format_duration(resources.walltime)} exceeds {where}'s "
            f"limit of {format_duration(partition.max_walltime)}"
        )
    if partition.max_nodes and resources.nodes > partition.max_nodes:
        raise SpecError(
            f"resources.nodes: {resources.nodes} exceeds {where}'s limit of {partition.max_nodes}"
        )
    if partition.max_gpus is not None and resources.gpus > partition.max_gpus:
        raise SpecError(
            f"resources.gpus: {resources.gpus} exceeds {where}'s limit of {partition.max_gpus}"
        )
    known = partition.known_gpu_types
    if resources.gpu_type and known and resources.gpu_type not in known:
        raise SpecError(
            f"resources.gpu_type: {resources.gpu_type!r} is not in {where} "
            f"(it has {', '.join(known)})"
        )


def user_site_dir() -> Path:
    """``$XDG_CONFIG_HOME/hpcbridge/sites``: a user's own site configs, searched first."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hpcbridge" / "sites"


def find_site_file(name_or_path: str | Path) -> Path:
    """Resolve a site name or a YAML path to an existing file."""
    given = Path(name_or_path)
    if given.suffix in {".yaml", ".yml"} or given.parent != Path():
        if not given.is_file():
            raise ConfigError(f"site config file {given} does not exist")
        return given
    folders = [user_site_dir(), data_dir("site_configs")]
    for folder in folders:
        candidate = folder / f"{given}.yaml"
        if candidate.is_file():
            return candidate
    available = sorted(
        {path.stem for folder in folders if folder.is_dir() for path in folder.glob("*.yaml")}
    )
    raise ConfigError(
        f"no site named {str(given)!r}; known sites: {', '.join(available)} "
        f"(or give a path to a YAML file)"
    )
