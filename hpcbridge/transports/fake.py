"""A transport that answers from a function: for users testing their own pipelines.

hpcbridge's own claims about Slurm are checked on real Slurm; this is for code *around*
hpcbridge, where a user wants to see which commands their pipeline would run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hpcbridge.transports.base import CommandResult

HandlerAnswer = CommandResult | tuple[int, str, str] | str


@dataclass(frozen=True)
class FakeCall:
    """One command the fake was asked to run."""

    argv: tuple[str, ...]
    stdin: str | None
    env: Mapping[str, str] = field(default_factory=dict)


class FakeTransport:
    """Answers each command with ``handler(argv, stdin)``.

    The handler returns a CommandResult, a ``(returncode, stdout, stderr)`` tuple, or a
    plain string taken as the stdout of a successful command. Every call is kept in ``calls``.
    """

    def __init__(self, handler: Callable[[list[str], str | None], HandlerAnswer]) -> None:
        self.handler = handler
        self.calls: list[FakeCall] = []
        self.closed = False

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Record the call and return the handler's answer."""
        command = tuple(argv)
        self.calls.append(FakeCall(command, stdin, dict(env or {})))
        answer = self.handler(list(command), stdin)
        if isinstance(answer, CommandResult):
            return answer
        if isinstance(answer, str):
            return CommandResult(command, 0, answer, "")
        returncode, stdout, stderr = answer
        return CommandResult(command, returncode, stdout, stderr)

    def close(self) -> None:
        """Mark the fake closed so tests can check that owners release transports."""
        self.closed = True
