"""A transport that runs commands through another one and keeps a record of them.

It answers "which scheduler commands did that take?" against a real system: the status of
a thousand jobs should be one squeue, not a thousand. ``alter`` may rewrite an answer, to
see how a caller copes with a lost or failed reply from a command that really ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from hpcbridge.transports.base import CommandResult, Transport

Alteration = Callable[[list[str], CommandResult], CommandResult]


class RecordingTransport:
    """Runs every command through ``inner``; ``commands`` lists each argv in order."""

    def __init__(self, inner: Transport, alter: Alteration | None = None) -> None:
        self.inner = inner
        self.alter = alter
        self.commands: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Record ``argv``, run it through the inner transport, and maybe alter the answer."""
        self.commands.append(list(argv))
        result = self.inner.run(argv, stdin=stdin, env=env, timeout=timeout)
        return self.alter(list(argv), result) if self.alter else result

    def count(self, program: str) -> int:
        """How many commands ran ``program``."""
        return sum(1 for argv in self.commands if argv[0] == program)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()
