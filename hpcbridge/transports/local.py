"""Run commands on this machine with subprocess, never through a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from hpcbridge.errors import CommandTimeout, TransportError
from hpcbridge.transports.base import CommandResult


class LocalTransport:
    """Commands run as child processes of this Python process."""

    def __init__(self, default_timeout: float = 120.0) -> None:
        self.default_timeout = default_timeout

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv``; a missing program or a timeout becomes a TransportError."""
        command = list(argv)
        limit = self.default_timeout if timeout is None else timeout
        try:
            completed = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=limit,
                env={**os.environ, **env} if env else None,
                check=False,
                shell=False,
            )
        except FileNotFoundError as exc:
            raise TransportError(f"{command[0]!r} is not installed or not on PATH") from exc
        except PermissionError as exc:
            raise TransportError(f"{command[0]!r} is not executable: {exc.strerror}") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(
                f"{' '.join(command)} ran past {limit:g} s and was killed"
            ) from exc
        return CommandResult(
            tuple(command), completed.returncode, completed.stdout, completed.stderr
        )

    def close(self) -> None:
        """Nothing to release: every command is its own process."""
