"""Run scheduler commands on a cluster's login node over SSH (paramiko, the ``ssh`` extra).

A fresh ``ssh host squeue`` pays for a TCP connection, a key exchange and a login every
time; a Cluster polls often, so one connection is made on first use and kept, and each
command is a new channel on it (one round trip, plus the remote shell's start). When the
connection drops it is made again; what that means for the command that was running is
for the caller to decide:

* a channel that could not even be opened ran nothing, so it is retried here at once, on a
  fresh connection, whatever the command;
* a command cut off after it was sent may or may not have run: that is
  ``TransportUnavailable`` (transient). SchedulerCommands repeats status and cancel
  commands, and looks for a submission's token before it would submit again.

The remote side runs each argv through the login shell, so every word is quoted
(``shlex.join``); environment variables go in front as ``env NAME=value``. Files are staged
over SFTP under a temporary name and renamed into place, so a reader sees the old file or
the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from hpcbridge.errors import CommandTimeout, TransportError, TransportUnavailable
from hpcbridge.site import SshTransportConfig
from hpcbridge.transports.base import CommandResult
from hpcbridge.transports.ssh_connect import Connection, connect
from hpcbridge.transports.ssh_route import Route, resolve_route

log = logging.getLogger(__name__)

T = TypeVar("T")
_CHUNK = 32768  # paramiko's largest SSH packet payload
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Errors that mean the connection (not the command, nor an SFTP request) failed.
_CONNECTION_ERRORS = (EOFError, ConnectionError, TimeoutError, paramiko.SSHException)


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The command line for the remote shell: every word quoted, ``env`` set in front."""
    if not argv:
        raise TransportError("no command given")
    prefix: list[str] = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise TransportError(f"{name!r} is not an environment variable name")
        prefix.append(f"{name}={value}")
    return shlex.join(["env", *prefix, *argv] if prefix else argv)


class SshTransport:
    """Commands and file staging on one remote host, over one kept SSH connection."""

    def __init__(self, config: SshTransportConfig) -> None:
        self.config = config
        self.route: Route = resolve_route(config)
        self.connections_made = 0
        self._lock = threading.Lock()
        # paramiko's SFTPClient reads each answer on the calling thread: one request at a time.
        self._sftp_lock = threading.Lock()
        self._connection: Connection | None = None
        self._closed = False

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the remote host and wait for it to end."""
        command = remote_command(argv, env)
        limit = self.config.command_timeout if timeout is None else timeout
        channel = self._open_channel()
        try:
            return self._execute(channel, tuple(argv), command, stdin, limit)
        finally:
            channel.close()

    def upload(
        self,
        source: bytes | os.PathLike[str],
        remote_path: str,
        *,
        mode: int | None = None,
    ) -> None:
        """Write ``source`` (bytes, or a local file) to ``remote_path`` atomically over SFTP.

        The data goes to a temporary name in the same folder, which is then renamed over
        ``remote_path`` (posix-rename: the old file is replaced in one step). ``mode``
        defaults to the local file's permissions, or 0o644 for bytes. Staging the same file
        twice is harmless, so one dropped connection is retried on a fresh one.
        """
        if mode is None:
            mode = 0o644 if isinstance(source, bytes) else Path(source).stat().st_mode & 0o777
        temporary = _temporary_name(remote_path)

        def put(sftp: paramiko.SFTPClient) -> None:
            with _open_source(source) as reader:
                _put_atomically(sftp, reader, temporary, remote_path, mode)

        try:
            self.sftp(put, f"stage {remote_path}")
        except FileNotFoundError as exc:  # its folder is missing
            raise TransportError(
                f"cannot stage {remote_path} on {self.route.target}: {exc}"
            ) from exc

    def sftp(self, action: Callable[[paramiko.SFTPClient], T], what: str) -> T:
        """``action`` on the kept connection's SFTP session, which ``what`` describes
        ("stage /path"). Only for actions safe to do twice (reads, atomic writes, removals):
        one dropped connection is retried on a fresh one. A refusal (no such file, permission,
        disk full) is a TransportError; FileNotFoundError passes through, for callers to whom
        a missing file is an answer."""
        for attempt in (1, 2):
            connection = self._current()
            try:
                with self._sftp_lock:
                    return action(connection.sftp())
            except FileNotFoundError:
                raise
            except (OSError, *_CONNECTION_ERRORS) as exc:
                # SFTP refusals are OSErrors, and so is a write on a connection that died;
                # only the first leave the session up.
                if connection.sftp_open() and not isinstance(exc, _CONNECTION_ERRORS):
                    raise TransportError(f"cannot {what} on {self.route.target}: {exc}") from exc
                self._drop(connection)
                if attempt == 2:
                    raise TransportUnavailable(
                        f"the connection to {self.route.target} dropped: could not {what}"
                    ) from exc
                log.warning("connection lost, could not %s; trying again", what)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        """Log out; the transport cannot be used afterwards."""
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _current(self) -> Connection:
        """The kept connection, made again if it dropped since the last command."""
        with self._lock:
            if self._closed:
                raise TransportError(f"the SSH transport to {self.route.target} was closed")
            if self._connection is not None and self._connection.is_active():
                return self._connection
            if self._connection is not None:
                log.warning("the SSH connection to %s dropped; reconnecting", self.route.target)
                self._connection.close()
                self._connection = None
            started = time.perf_counter()
            self._connection = connect(
                self.route,
                policy=self.config.host_key_policy,
                timeout=self.config.connect_timeout,
                keepalive=self.config.keepalive_interval,
            )
            self.connections_made += 1
            elapsed = (time.perf_counter() - started) * 1e3
            log.info("connected to %s in %.0f ms", self.route.target, elapsed)
            return self._connection

    def _drop(self, connection: Connection) -> None:
        """Forget a connection that failed, so the next command makes a new one."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
        connection.close()

    def _open_channel(self) -> paramiko.Channel:
        """A session channel; a connection that turns out dead is replaced once.

        Opening a channel runs nothing on the remote side, so trying again on a new
        connection is safe for any command, submissions included.
        """
        for attempt in (1, 2):
            connection = self._current()
            try:
                return connection.transport.open_session(timeout=self.config.connect_timeout)
            except (OSError, *_CONNECTION_ERRORS) as exc:
                self._drop(connection)
                if attempt == 2:
                    raise TransportUnavailable(
                        f"cannot open a session on {self.route.target}: {exc}"
                    ) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _execute(
        self,
        channel: paramiko.Channel,
        argv: tuple[str, ...],
        command: str,
        stdin: str | None,
        limit: float,
    ) -> CommandResult:
        deadline = time.monotonic() + limit
        try:
            sent = _send(channel, command, stdin, limit)
        except (OSError, *_CONNECTION_ERRORS) as exc:
            raise self._lost(argv, str(exc) or type(exc).__name__) from exc
        cap = self.config.max_output_mb * 2**20
        try:
            output = _collect(channel, deadline, cap) if sent else None
        except _OutputTooLarge:
            _stop_remote_command(channel)
            raise TransportError(
                f"{shlex.join(argv)} printed more than {self.config.max_output_mb} MB on "
                f"{self.route.target} and was stopped (the site's ssh.max_output_mb): ask for "
                "less at a time (fewer jobs, a shorter window) or raise the limit"
            ) from None
        if output is None:
            _stop_remote_command(channel)
            raise CommandTimeout(
                f"{shlex.join(argv)} ran past {limit:g} s on {self.route.target} and was stopped"
            )
        if channel.exit_status < 0:  # paramiko's -1: the channel closed without one
            raise self._lost(argv, "no exit status came back")
        stdout, stderr = output
        return CommandResult(argv, channel.exit_status, _text(stdout), _text(stderr))

    def _lost(self, argv: tuple[str, ...], reason: str) -> TransportUnavailable:
        return TransportUnavailable(
            f"lost the connection to {self.route.target} while {argv[0]} ran ({reason}); "
            "it may or may not have taken effect"
        )


def _send(channel: paramiko.Channel, command: str, stdin: str | None, limit: float) -> bool:
    """Start the command and send its input; False if that alone took past ``limit``.

    paramiko waits for the server's answer to the exec request without a timeout, and
    writing input waits for the command to read it, so a timer closes the channel to
    wake both. It can only fire before _collect starts, which selects on the channel's
    pipe, and closing the channel closes that pipe.
    """
    lock = threading.Lock()
    sending = True
    expired = False

    def expire() -> None:
        nonlocal expired
        with lock:
            if not sending:
                return
            expired = True
        _stop_remote_command(channel)
        channel.close()

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    try:
        channel.exec_command(command)
        # A command may exit without reading all its input; its exit status tells the
        # outcome, so a failed write is not an error by itself.
        with contextlib.suppress(OSError, *_CONNECTION_ERRORS):
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
    except (OSError, *_CONNECTION_ERRORS):
        with lock:
            if not expired:
                raise
    finally:
        timer.cancel()
        with lock:
            sending = False
    return not expired


class _OutputTooLarge(Exception):
    """The command printed more than the transport keeps."""


def _collect(channel: paramiko.Channel, deadline: float, cap: int) -> tuple[bytes, bytes] | None:
    """stdout and stderr once the command has ended; None if ``deadline`` came first, and
    _OutputTooLarge as soon as both together pass ``cap`` bytes.

    Both streams share one SSH window: reading only stdout while a command fills stderr
    would stall it, so whichever has data is read as it comes, until the server's EOF (or
    the channel closes when the connection drops), then the exit status is awaited. Chunks
    are joined once at the end: growing one buffer costs a copy per resize.
    """
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    streams = (
        (channel.recv_ready, channel.recv, stdout),
        (channel.recv_stderr_ready, channel.recv_stderr, stderr),
    )
    kept = 0
    ready = channel.fileno()  # readable while either stream has data, and after EOF
    while True:
        finished = bool(channel.eof_received) or channel.closed
        for has_data, receive, chunks in streams:
            while has_data():
                chunks.append(receive(_CHUNK))
                kept += len(chunks[-1])
                if kept > cap:
                    raise _OutputTooLarge
        remaining = deadline - time.monotonic()
        if finished:
            ended = channel.status_event.wait(max(remaining, 0.0))
            return (b"".join(stdout), b"".join(stderr)) if ended else None
        if remaining <= 0:
            return None
        select.select([ready], [], [], remaining)


def _stop_remote_command(channel: paramiko.Channel) -> None:
    """Ask sshd to SIGKILL the command (RFC 4254 section 6.9, the "signal" request).

    paramiko has no call for it, so the request is built here. OpenSSH honours it only in
    privilege-separated sessions, which every login but root's is; a root command keeps
    running until it ends by itself. Best effort: the connection may already be gone.
    """
    transport = channel.transport
    if transport is None or channel.closed:
        return
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string("KILL")
    with contextlib.suppress(OSError, *_CONNECTION_ERRORS):
        transport._send_user_message(message)  # type: ignore[attr-defined]


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _temporary_name(remote_path: str) -> str:
    folder, _, name = remote_path.rpartition("/")
    hidden = f".{name}.hpcbridge-{os.urandom(6).hex()}.part"
    return f"{folder}/{hidden}" if "/" in remote_path else hidden


def _open_source(source: bytes | os.PathLike[str]) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else Path(source).open("rb")


def _put_atomically(
    sftp: paramiko.SFTPClient, reader: BinaryIO, temporary: str, remote_path: str, mode: int
) -> None:
    """Write the temporary file (mode set before any data), then rename it into place."""
    with contextlib.suppress(OSError):  # left by an earlier try whose connection dropped
        sftp.remove(temporary)
    try:
        with sftp.open(temporary, "wb") as remote:
            remote.chmod(mode)
            remote.set_pipelined(True)
            while chunk := reader.read(_CHUNK):
                remote.write(chunk)
        sftp.posix_rename(temporary, remote_path)
    except BaseException:
        with contextlib.suppress(OSError, *_CONNECTION_ERRORS):
            sftp.remove(temporary)
        raise
