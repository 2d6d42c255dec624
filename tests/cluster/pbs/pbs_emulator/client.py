"""The client side of a batch request: connect (starting the server if none runs), send one
JSON request, read one JSON answer.

When the "server down" fault is on, the server does not listen and no new one is started, so
commands fail as real ones do against a dead pbs_server::

    Connection refused
    qstat: cannot connect to server vm (errno=15010)

(exit status 162 = 15010 & 0xff, as OpenPBS's qsub reports it).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from pbs_emulator.home import Home

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "bin" / "pbs_server"
START_TIMEOUT = 15.0


class ServerUnavailable(Exception):
    """No server answers (connection refused): what pbs_connect() reports as errno 15010."""


class ConnectionLost(Exception):
    """The server closed the connection without answering (PBS: "Premature end of message")."""


def _connect(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(name)
    except OSError:
        sock.close()
        raise
    return sock


def server_running(home: Home) -> bool:
    """Whether a server process holds this home's server lock."""
    if not home.server_lock.exists():
        return False
    fd = os.open(home.server_lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start_server(home: Home) -> None:
    """Start a server for `home` (it detaches at once) and wait until it answers."""
    import subprocess  # only needed here: keep the commands' start-up light

    home.ensure()
    subprocess.run(
        [sys.executable, "-S", str(SERVER_SCRIPT), str(home.root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        close_fds=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            _connect(home.socket_name(admin=True)).close()
            return
        except OSError:
            time.sleep(0.005)
    raise ServerUnavailable(f"the PBS emulator server did not start (see {home.server_out})")


def connect(home: Home, admin: bool = False, start: bool = True) -> socket.socket:
    """A connection to the server, starting one if needed (not while "server down" is set)."""
    name = home.socket_name(admin)
    try:
        return _connect(name)
    except OSError:
        pass
    if not start:
        raise ServerUnavailable("no server is running")
    home.ensure()
    with home.locked("server_priv/start.lock"):
        try:
            return _connect(name)
        except OSError:
            pass
        running = server_running(home)
        down = bool(home.load_config().get("faults", {}).get("server_down"))
        if not running and (admin or not down):
            start_server(home)
        try:
            return _connect(name)
        except OSError as exc:
            raise ServerUnavailable(str(exc)) from exc


def request(
    payload: dict[str, Any], home: Home | None = None, admin: bool = False, start: bool = True
) -> dict[str, Any]:
    """Send one request and return the server's answer."""
    home = home or Home.from_env()
    with connect(home, admin, start) as sock:
        sock.sendall(json.dumps(payload).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ConnectionLost("the server closed the connection without answering")
    answer: dict[str, Any] = json.loads(data)
    return answer
