"""hpcbridge: one typed interface to the Slurm and PBS batch systems you already have."""

from hpcbridge.cluster import Cluster
from hpcbridge.errors import (
    CommandTimeout,
    ConfigError,
    HpcBridgeError,
    JobNotFound,
    RenderError,
    SchedulerError,
    SchedulerUnavailable,
    SpecError,
    SubmitError,
    TransportError,
    WaitTimeout,
)
from hpcbridge.models import Dependency, JobInfo, JobSpec, JobState, Resources, SignalSpec
from hpcbridge.site import SiteConfig
from hpcbridge.transports import CommandResult, FakeTransport, LocalTransport, Transport

__version__ = "0.1.0"

__all__ = [
    "Cluster",
    "CommandResult",
    "CommandTimeout",
    "ConfigError",
    "Dependency",
    "FakeTransport",
    "HpcBridgeError",
    "JobInfo",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "LocalTransport",
    "RenderError",
    "Resources",
    "SchedulerError",
    "SchedulerUnavailable",
    "SignalSpec",
    "SiteConfig",
    "SpecError",
    "SubmitError",
    "Transport",
    "TransportError",
    "WaitTimeout",
    "__version__",
]
