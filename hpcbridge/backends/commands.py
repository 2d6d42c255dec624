"""Running scheduler commands with retries: the one place backends execute anything.

Controllers go away for a moment (restarts, overload); commands that are safe to repeat are
retried with exponential backoff while the error says so (``transient``). Each backend
supplies how to read its own error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from hpcbridge.errors import HpcBridgeError, JobNotFound, SchedulerError
from hpcbridge.transports.base import CommandResult, Transport

Classifier = Callable[[CommandResult], SchedulerError]


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, HpcBridgeError) and error.transient


class SchedulerCommands:
    """A transport plus a backend's error classifier and retry policy."""

    def __init__(
        self,
        transport: Transport,
        classify: Classifier,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.transport = transport
        self.classify = classify
        self.attempts = attempts
        self.backoff = backoff

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> CommandResult:
        """Run an idempotent command, retrying while the scheduler is unavailable.

        With ``missing_ok`` an unknown-job answer is returned instead of raised, because a
        query for many jobs still lists the known ones.
        """
        for attempt in self.retrying():
            with attempt:
                result = self.transport.run(argv, env=env)
                if result.ok:
                    return result
                error = self.classify(result)
                if missing_ok and isinstance(error, JobNotFound):
                    return result
                raise error
        raise AssertionError("unreachable: tenacity reraises the last error")

    def retrying(self) -> Retrying:
        """The retry policy, for callers that need their own loop (submission)."""
        return Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=10),
            reraise=True,
        )
