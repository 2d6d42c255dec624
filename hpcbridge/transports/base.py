"""What every transport offers: run an argv, without a shell, and report what it printed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command; a non-zero exit is data, not an exception, here."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """The command exited 0."""
        return self.returncode == 0


class Transport(Protocol):
    """Runs commands where the scheduler lives. Implementations never use a shell."""

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` with ``env`` added to the environment and wait for it to end."""
        ...

    def close(self) -> None:
        """Release connections; the transport may not be used afterwards."""
        ...
