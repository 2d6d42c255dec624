"""hpcbridge: one typed interface to the Slurm and PBS batch systems you already have.

Names are imported on first use (PEP 562), so ``hpcbridge --help`` and other light
entry points do not pay for pydantic, Jinja and the backends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.errors import (
        CommandTimeout,
        ConfigError,
        HpcBridgeError,
        JobNotFound,
        LedgerError,
        RenderError,
        SchedulerError,
        SchedulerUnavailable,
        SpecError,
        SubmitError,
        TraceError,
        TransportError,
        TransportUnavailable,
        WaitTimeout,
    )
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.models import Dependency, JobInfo, JobSpec, JobState, Resources, SignalSpec
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports import (
        CommandResult,
        FakeTransport,
        LocalTransport,
        RecordingTransport,
        SshTransport,
        Transport,
    )

__version__ = "0.1.0"

_HOMES = {
    "hpcbridge.cluster": ["Cluster"],
    "hpcbridge.errors": [
        "CommandTimeout",
        "ConfigError",
        "HpcBridgeError",
        "JobNotFound",
        "LedgerError",
        "RenderError",
        "SchedulerError",
        "SchedulerUnavailable",
        "SpecError",
        "SubmitError",
        "TraceError",
        "TransportError",
        "TransportUnavailable",
        "WaitTimeout",
    ],
    "hpcbridge.ledger.store": ["Ledger"],
    "hpcbridge.models": ["Dependency", "JobInfo", "JobSpec", "JobState", "Resources", "SignalSpec"],
    "hpcbridge.site": ["SiteConfig"],
    "hpcbridge.transports": [
        "CommandResult",
        "FakeTransport",
        "LocalTransport",
        "RecordingTransport",
        "SshTransport",
        "Transport",
    ],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

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
    "Ledger",
    "LedgerError",
    "LocalTransport",
    "RecordingTransport",
    "RenderError",
    "Resources",
    "SchedulerError",
    "SchedulerUnavailable",
    "SignalSpec",
    "SiteConfig",
    "SpecError",
    "SshTransport",
    "SubmitError",
    "TraceError",
    "Transport",
    "TransportError",
    "TransportUnavailable",
    "WaitTimeout",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcbridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
