"""hpcbridge: one typed interface to the Slurm and PBS batch systems you already have.

Names are imported on first use (PEP 562), so ``hpcbridge --help`` and other light
entry points do not pay for pydantic, Jinja and the backends.

The pydantic models (JobSpec and its parts, JobInfo, SiteConfig) are handed out as a
stand-in until first used, as long as their module is not loaded yet: importing pydantic
alone costs about 95 ms, so ``from hpcbridge import Cluster, JobSpec`` would otherwise pay
it before a line of the caller's own code runs. The stand-in loads the model the first time
it is called or asked anything, then behaves as the class does (calls, class methods,
isinstance, subclassing, ``JobSpec | None``); ``hpcbridge.JobSpec`` is the class itself
from then on. A pydantic model of your own whose field is a JobSpec should name the class
(``hpcbridge.jobs.spec.JobSpec``), as pydantic does not look through the stand-in.
"""

from __future__ import annotations

import importlib
import sys
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
    from hpcbridge.jobs.sections import CheckpointSpec, Dependency, Resources, SignalSpec
    from hpcbridge.jobs.spec import JobSpec
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
    from hpcbridge.workflows.run import resume_workflow, submit_workflow
    from hpcbridge.workflows.segments import submit_segments
    from hpcbridge.workflows.status import workflow_status
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
    "hpcbridge.jobs.spec": ["JobSpec"],
    "hpcbridge.jobs.sections": ["CheckpointSpec", "Dependency", "Resources", "SignalSpec"],
    "hpcbridge.jobs.state": ["JobInfo"],
    "hpcbridge.jobs.lifecycle": ["JobState"],
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
    "hpcbridge.workflows.run": ["resume_workflow", "submit_workflow"],
    "hpcbridge.workflows.status": ["workflow_status"],
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


# The pydantic models handed out as a _Deferred stand-in while their module is not loaded.
_DEFERRED = frozenset(
    {"CheckpointSpec", "Dependency", "JobInfo", "JobSpec", "Resources", "SignalSpec", "SiteConfig"}
)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcbridge' has no attribute {name!r}")
    if name in _DEFERRED and module not in sys.modules:
        return _Deferred(module, name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Deferred:
    """Stands for class ``name`` of ``module`` and imports it when first used (see above)."""

    __slots__ = ("_module", "_name")

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def _load(self) -> Any:
        value = getattr(importlib.import_module(self._module), self._name)
        globals()[self._name] = value
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._load()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._load())

    def __subclasscheck__(self, subclass: Any) -> bool:
        return issubclass(subclass, self._load())

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (self._load(),)

    def __or__(self, other: Any) -> Any:
        return self._load() | other

    def __ror__(self, other: Any) -> Any:
        return other | self._load()

    def __getitem__(self, item: Any) -> Any:
        return self._load()[item]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Deferred):
            other = other._load()
        return bool(self._load() == other)

    def __hash__(self) -> int:
        return hash(self._load())

    def __repr__(self) -> str:
        return repr(self._load())


def __dir__() -> list[str]:
    return __all__
