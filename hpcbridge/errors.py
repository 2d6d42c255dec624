"""The one exception tree of hpcbridge.

Every error a user can catch comes from here; third-party errors are wrapped where they enter
(``raise ... from exc``) so callers never need to import paramiko, SQLAlchemy or subprocess to
handle failures. ``transient`` tells retry logic whether repeating the operation is safe and
may succeed::

    HpcBridgeError                      base; .transient is False unless stated
    ├── ConfigError                     a site config is missing, unreadable or invalid, or
    │                                   names files its user may not read (PBS accounting logs)
    ├── SpecError                       a job spec is invalid (field and value named)
    ├── RenderError                     a template failed to render
    ├── TransportError                  a command could not be run at all
    │   ├── CommandTimeout              it ran past its timeout (transient)
    │   └── TransportUnavailable        the remote host is unreachable or the connection
    │                                   dropped (transient)
    ├── SchedulerError                  the scheduler answered with an error
    │   ├── SchedulerUnavailable        controller down or busy (transient)
    │   ├── SubmitError                 the scheduler refused a submission
    │   ├── JobNotFound                 the scheduler does not know the job id
    │   └── PermissionDenied            the user lacks the right (PBS qrerun: operators)
    ├── WaitTimeout                     jobs did not finish within wait()'s timeout
    ├── LedgerError                     the ledger database cannot be opened, migrated or written
    ├── TraceError                      an imported trace is malformed (line and field named)
    ├── WorkflowError                   a workflow id is unknown or its stored state unusable
    ├── CheckpointError                 no valid checkpoint, or a manifest cannot be read
    ├── ForecastError                   too little history to forecast or advise from
    ├── BudgetExceeded                  a job's worst case does not fit what its account (or
    │                                   user) has left; the numbers and the knob named
    └── TaskError                       a Python function run as a job (cluster.executor())
        │                               gave no result
        ├── JobKilled                   the scheduler ended its job (TIMEOUT, OUT_OF_MEMORY,
        │                               NODE_FAIL, CANCELLED, ...): state and stderr tail kept
        ├── WorkerError                 the worker's Python could not run it (a module it
        │                               cannot import, another Python or hpcbridge version)
        ├── RestartsExhausted           a checkpointable one was stopped more often than its
        │                               max_restarts allows (restarts and limit kept)
        └── RemoteError                 it raised an exception that cannot be rebuilt here
                                        (type name and remote traceback kept)
"""

from __future__ import annotations

from collections.abc import Sequence


class HpcBridgeError(Exception):
    """Base of all hpcbridge errors."""

    transient: bool = False


class ConfigError(HpcBridgeError):
    """A site configuration is missing or invalid, or cannot be used as this user (a PBS
    accounting folder it names is not readable): fixed by the configuration, not by retrying."""


class SpecError(HpcBridgeError, ValueError):
    """A job specification is invalid; the message names the field and the bad value."""


class RenderError(HpcBridgeError):
    """A job script template failed to render."""


class TransportError(HpcBridgeError):
    """A command could not be started or its output could not be read."""


class CommandTimeout(TransportError):
    """A command ran longer than its timeout and was killed."""

    transient = True


class TransportUnavailable(TransportError):
    """The connection to a remote host could not be made, or dropped; reconnecting may work.

    A command cut off this way may or may not have run, so only commands that are safe to
    repeat are retried blindly; a submission first asks the scheduler for its token.
    """

    transient = True


class SchedulerError(HpcBridgeError):
    """A scheduler command exited non-zero; keeps the command and its own message."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        detail = f"{message}: {stderr.strip()}" if stderr.strip() else message
        super().__init__(detail)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class SchedulerUnavailable(SchedulerError):
    """The controller did not answer or asked us to try again later."""

    transient = True


class SubmitError(SchedulerError):
    """The scheduler refused a job submission."""


class JobNotFound(SchedulerError):
    """The scheduler has no record of a job id."""


class PermissionDenied(SchedulerError):
    """The scheduler refused an operation this user has no right to: another user's job, or
    one kept for operators and managers (PBS's qrerun). Retrying cannot help."""


class WaitTimeout(HpcBridgeError):
    """Jobs were still unfinished when wait() gave up."""

    transient = True


class LedgerError(HpcBridgeError):
    """The accounting ledger cannot be opened, migrated, read or written."""


class TraceError(HpcBridgeError, ValueError):
    """A workload trace or accounting log given to the ledger is not in its format."""


class WorkflowError(HpcBridgeError):
    """A workflow id is unknown, or its stored stage-to-job mapping cannot be read or written.

    An invalid workflow file (a cycle, a stage depending on a missing stage) is a SpecError.
    """


class CheckpointError(HpcBridgeError):
    """No valid checkpoint could be found, or a checkpoint manifest cannot be read."""


class ForecastError(HpcBridgeError):
    """The ledger holds too little history for the forecast or advice asked for."""


class BudgetExceeded(HpcBridgeError):
    """A job was refused at submit: its worst case, with what the account's queued and
    running jobs have committed, exceeds what is left of its budget."""


class DeadlineInfeasible(SpecError):
    """A job or workflow cannot finish before its deadline (the estimate says why); refused
    at submit unless forced."""


class TaskError(HpcBridgeError):
    """A function submitted through ``Cluster.executor()`` gave no result. Its job's id and
    the folder holding its call, result and stderr are kept, so the user can look."""

    def __init__(self, message: str, *, job_id: str, folder: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.folder = folder


class JobKilled(TaskError):
    """The scheduler ended the function's job before it returned (its time limit, memory,
    a node failure, a cancellation): what to change is the job, not the function, so the
    state and the last lines the job wrote to stderr are carried to say which."""

    def __init__(self, message: str, *, job_id: str, folder: str, state: str, stderr_tail: str):
        super().__init__(message, job_id=job_id, folder=folder)
        self.state = state
        self.stderr_tail = stderr_tail


class WorkerError(TaskError):
    """The compute node's Python could not run the function: it cannot import a module the
    function needs (or hpcbridge, or cloudpickle), or it is another Python or hpcbridge
    version than the client's, whose pickles it would misread."""


class RestartsExhausted(TaskError):
    """A checkpointable function's job was stopped and requeued ``restarts`` times, which
    its checkpoint's ``max_restarts`` bounds, so the wrapper would not start it again: it
    needs a longer walltime per run, or more restarts."""

    def __init__(
        self, message: str, *, job_id: str, folder: str, restarts: int, max_restarts: int
    ) -> None:
        super().__init__(message, job_id=job_id, folder=folder)
        self.restarts = restarts
        self.max_restarts = max_restarts


class RemoteError(TaskError):
    """The function raised an exception that cannot be rebuilt here (its class is not
    importable, or it would not pickle); its type name and remote traceback are the message."""

    def __init__(self, message: str, *, job_id: str, folder: str, remote_type: str) -> None:
        super().__init__(message, job_id=job_id, folder=folder)
        self.remote_type = remote_type
