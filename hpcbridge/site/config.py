"""A site config: one validated YAML file per cluster, describing how to reach it and its limits.

Limits are checked before submission so a user hears "walltime 3-00:00:00 exceeds partition
debug's 1:00:00" from us at once, instead of a terse refusal from the controller later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from hpcbridge.errors import ConfigError, SpecError
from hpcbridge.jobs.fields import Token
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.validation import describe_validation_error
from hpcbridge.resources import data_dir
from hpcbridge.site.base import ConfigModel
from hpcbridge.site.budgets import BudgetOptions, ClientShare
from hpcbridge.site.energy import EnergyOptions
from hpcbridge.site.options import LedgerOptions, LocalOptions, PbsOptions, SlurmOptions
from hpcbridge.site.partitions import PartitionConfig, check_limits
from hpcbridge.site.priorities import DeadlineOptions, PreemptionOptions, PriorityOptions
from hpcbridge.site.transport import LocalTransportConfig, TransportConfig


class SiteConfig(ConfigModel):
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
            check_limits(prepared, partition)
        return prepared

    def _partition(self, name: str | None) -> PartitionConfig | None:
        if name is None or not self.partitions:
            return None
        if name not in self.partitions:
            known = ", ".join(sorted(self.partitions))
            raise SpecError(f"partition: {name!r} is not a partition of site {self.name} ({known})")
        return self.partitions[name]


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
