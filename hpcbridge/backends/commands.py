"""Running scheduler commands with retries: the one place backends execute anything.

Controllers go away for a moment (restarts, overload); commands that are safe to repeat are
retried with exponential backoff while the error says so (``transient``). A submission is
not safe to repeat, so it is retried only after asking the scheduler whether the first try
already created the job. Each backend supplies an ErrorTable: how its commands word errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from hpcbridge.errors import (
    HpcBridgeError,
    JobNotFound,
    PermissionDenied,
    SchedulerError,
    SchedulerUnavailable,
    SubmitError,
)
from hpcbridge.transports.base import CommandResult, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorTable:
    """How one scheduler's commands say what went wrong, in words found in their output."""

    unavailable: str  # who is unavailable: "the Slurm controller", "the PBS server"
    transient: tuple[str, ...]
    not_found: tuple[str, ...]
    submit_fields: Mapping[str, str]  # refusal text -> the JobSpec field responsible
    denied: tuple[str, ...] = ()
    rights: Mapping[str, str] = field(default_factory=dict)  # command -> who may run it

    def classify(self, result: CommandResult) -> SchedulerError:
        """The error a failed command stands for, with the scheduler's own message."""
        message = result.stderr.strip() or result.stdout.strip()
        command = result.argv[0]
        kind: type[SchedulerError] = SchedulerError
        summary = f"{command} failed with exit code {result.returncode}"
        if any(text in message for text in self.transient):
            kind, summary = SchedulerUnavailable, f"{command}: {self.unavailable} is unavailable"
        elif any(text in message for text in self.not_found):
            kind, summary = JobNotFound, f"{command}: no such job ({' '.join(result.argv[1:])})"
        elif any(text in message for text in self.denied):
            kind, summary = PermissionDenied, f"{command}: not permitted for this user"
            if command in self.rights:
                summary += f" ({self.rights[command]})"
        return kind(summary, argv=result.argv, returncode=result.returncode, stderr=message)

    def refusal(self, result: CommandResult) -> SchedulerError:
        """A failed submission: transient, or a SubmitError naming the field when it can."""
        error = self.classify(result)
        if error.transient:
            return error
        command = result.argv[0]
        field = next((f for text, f in self.submit_fields.items() if text in error.stderr), None)
        what = f"{command} refused the job ({field})" if field else f"{command} refused the job"
        return SubmitError(what, argv=error.argv, returncode=error.returncode, stderr=error.stderr)


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, HpcBridgeError) and error.transient


class SchedulerCommands:
    """A transport plus a scheduler's error table and the retry policy."""

    def __init__(
        self,
        transport: Transport,
        errors: ErrorTable,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.transport = transport
        self.errors = errors
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
                error = self.errors.classify(result)
                if missing_ok and isinstance(error, JobNotFound):
                    return result
                raise error
        raise AssertionError("unreachable: tenacity reraises the last error")

    def submit(
        self,
        argv: Sequence[str],
        script: str,
        *,
        token: str | None,
        parse: Callable[[str], str],
        find_existing: Callable[[str], str | None],
    ) -> str:
        """Submit ``script`` on stdin and return the job id, never creating the job twice.

        After a transient failure the answer may have been lost after the job was created,
        so ``find_existing(token)`` is asked first on every retry.
        """

        def send() -> str:
            result = self.transport.run(argv, stdin=script)
            if not result.ok:
                raise self.errors.refusal(result)
            return parse(result.stdout)

        return self.submit_once(send, token=token, find_existing=find_existing)

    def submit_once(
        self,
        send: Callable[[], str],
        *,
        token: str | None,
        find_existing: Callable[[str], str | None],
    ) -> str:
        """Call ``send`` (one submission, returning the job id) until it answers, asking
        ``find_existing(token)`` before each retry whether an earlier try created the job."""
        for attempt in self.retrying():
            with attempt:
                if attempt.retry_state.attempt_number > 1 and token:
                    existing = find_existing(token)
                    if existing:
                        log.info("job %s was submitted before the answer was lost", existing)
                        return existing
                return send()
        raise AssertionError("unreachable: tenacity reraises the last error")

    def retrying(self) -> Retrying:
        """Tries of one idempotent operation: again while its error is transient."""
        return Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=10),
            reraise=True,
        )
