"""Site configs: one validated YAML file per cluster (``config.SiteConfig``), built from one
model per concern: partitions and GPUs, transport, scheduler options, priorities, budgets,
energy. Everything is importable from here, as ``from hpcbridge.site import SiteConfig``."""

from hpcbridge.site.base import ConfigModel
from hpcbridge.site.budgets import AccountBudget, BudgetLimit, BudgetOptions, ClientShare
from hpcbridge.site.config import SiteConfig, find_site_file, user_site_dir
from hpcbridge.site.energy import EnergyOptions, TariffWindow
from hpcbridge.site.options import LedgerOptions, LocalOptions, PbsOptions, SlurmOptions
from hpcbridge.site.partitions import GpuOffer, PartitionConfig, check_limits
from hpcbridge.site.priorities import (
    DeadlineOptions,
    DeadlineStep,
    PreemptionOptions,
    PriorityLevel,
    PriorityOptions,
)
from hpcbridge.site.transport import LocalTransportConfig, SshTransportConfig, TransportConfig

__all__ = [
    "AccountBudget",
    "BudgetLimit",
    "BudgetOptions",
    "ClientShare",
    "ConfigModel",
    "DeadlineOptions",
    "DeadlineStep",
    "EnergyOptions",
    "GpuOffer",
    "LedgerOptions",
    "LocalOptions",
    "LocalTransportConfig",
    "PartitionConfig",
    "PbsOptions",
    "PreemptionOptions",
    "PriorityLevel",
    "PriorityOptions",
    "SiteConfig",
    "SlurmOptions",
    "SshTransportConfig",
    "TariffWindow",
    "TransportConfig",
    "check_limits",
    "find_site_file",
    "user_site_dir",
]
