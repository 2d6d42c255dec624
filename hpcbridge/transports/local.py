"""Run commands on this machine with subprocess, never through a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from hpcbridge.errors import CommandTimeout, TransportError
from hpcbridge.transports.base import CommandResult
from hpcbridge.transports.watchdog import WATCHDOG


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
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **env} if env else None,
                shell=False,
            )
        except FileNotFoundError as exc:
            raise TransportError(f"{command[0]!r} is not installed or not on PATH") from exc
        except OSError as exc:
            raise TransportError(f"{command[0]!r} cannot be run: {exc.strerror}") from exc
        watch = WATCHDOG.watch(process, limit)
        try:
            stdout, stderr = process.communicate(stdin)
        finally:
            WATCHDOG.release(watch)
        if watch.expired:
            raise CommandTimeout(f"{' '.join(command)} ran past {limit:g} s and was killed")
        return CommandResult(tuple(command), process.returncode, stdout, stderr)

    def close(self) -> None:
        """Nothing to release: every command is its own process."""
