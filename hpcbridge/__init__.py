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
        CheckpointError,
        CommandTimeout,
        ConfigError,
        ForecastError,
        HpcBridgeError,
        JobKilled,
        JobNotFound,
        LedgerError,
        PermissionDenied,
        RemoteError,
        RenderError,
        SchedulerError,
        SchedulerUnavailable,
        SpecError,
        SubmitError,
        TaskError,
        TraceError,
        TransportError,
        TransportUnavailable,
        WaitTimeout,
        WorkerError,
        WorkflowError,
    )
    from hpcbridge.forecast.advice import advise_walltime
    from hpcbridge.forecast.usage import budget_burndown, forecast_usage
    from hpcbridge.jobs.spec import CheckpointSpec, Dependency, JobSpec, Resources, SignalSpec
    from hpcbridge.jobs.state import JobInfo, JobState
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.reports.grant import grant_report
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports import (
        CommandResult,
        FakeTransport,
        LocalTransport,
        RecordingTransport,
        SshTransport,
        Transport,
    )
    from hpcbridge.workflows.export import render_workflow
    from hpcbridge.workflows.model import Workflow
    from hpcbridge.workflows.run import resume_workflow, submit_workflow, workflow_status
    from hpcbridge.workflows.segments import submit_segments
    from hpcbridge.workflows.store import LedgerStore, StateFileStore

__version__ = "0.1.0"

_HOMES = {
    "hpcbridge.cluster": ["Cluster"],
    "hpcbridge.errors": [
        "CheckpointError",
        "CommandTimeout",
        "ConfigError",
        "ForecastError",
        "HpcBridgeError",
        "JobKilled",
        "JobNotFound",
        "LedgerError",
        "PermissionDenied",
        "RemoteError",
        "RenderError",
        "SchedulerError",
        "SchedulerUnavailable",
        "SpecError",
        "SubmitError",
        "TaskError",
        "TraceError",
        "TransportError",
        "TransportUnavailable",
        "WaitTimeout",
        "WorkerError",
        "WorkflowError",
    ],
    "hpcbridge.forecast.advice": ["advise_walltime"],
    "hpcbridge.forecast.usage": ["budget_burndown", "forecast_usage"],
    "hpcbridge.reports.grant": ["grant_report"],
    "hpcbridge.ledger.store": ["Ledger"],
    "hpcbridge.jobs.spec": [
        "CheckpointSpec",
        "Dependency",
        "JobSpec",
        "Resources",
        "SignalSpec",
    ],
    "hpcbridge.jobs.state": ["JobInfo", "JobState"],
    "hpcbridge.workflows.segments": ["submit_segments"],
    "hpcbridge.site": ["SiteConfig"],
    "hpcbridge.transports": [
        "CommandResult",
        "FakeTransport",
        "LocalTransport",
        "RecordingTransport",
        "SshTransport",
        "Transport",
    ],
    "hpcbridge.workflows.model": ["Workflow"],
    "hpcbridge.workflows.run": ["resume_workflow", "submit_workflow", "workflow_status"],
    "hpcbridge.workflows.export": ["render_workflow"],
    "hpcbridge.workflows.store": ["LedgerStore", "StateFileStore"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CheckpointError",
    "CheckpointSpec",
    "Cluster",
    "CommandResult",
    "CommandTimeout",
    "ConfigError",
    "Dependency",
    "FakeTransport",
    "ForecastError",
    "HpcBridgeError",
    "JobInfo",
    "JobKilled",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "LocalTransport",
    "PermissionDenied",
    "RecordingTransport",
    "RemoteError",
    "RenderError",
    "Resources",
    "SchedulerError",
    "SchedulerUnavailable",
    "SignalSpec",
    "SiteConfig",
    "SpecError",
    "SshTransport",
    "StateFileStore",
    "SubmitError",
    "TaskError",
    "TraceError",
    "Transport",
    "TransportError",
    "TransportUnavailable",
    "WaitTimeout",
    "WorkerError",
    "Workflow",
    "WorkflowError",
    "__version__",
    "advise_walltime",
    "budget_burndown",
    "forecast_usage",
    "grant_report",
    "render_workflow",
    "resume_workflow",
    "submit_segments",
    "submit_workflow",
    "workflow_status",
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
