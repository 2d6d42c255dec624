"""Control of an emulated installation: start/stop the server, change the configuration, and
inject faults. Used by the ``pbs-emulator`` command and by the pytest plugin.

Faults live in config.json (so a restarted server keeps them) and reach a running server
through its admin socket, which stays open whatever the faults are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from pbs_emulator import client
from pbs_emulator.home import Home, write_atomic
from pbs_emulator.server import job_process_alive


def start(home: Home) -> int:
    """Make sure a server runs; its pid."""
    return int(client.request({"op": "ping"}, home, admin=True)["pid"])


def reload(home: Home) -> None:
    """Tell a running server to re-read config.json (nothing to do if none runs)."""
    with contextlib.suppress(client.ServerUnavailable):
        client.request({"op": "reload"}, home, admin=True, start=False)


def configure(home: Home, **changes: Any) -> dict[str, Any]:
    config = home.update_config(changes)
    reload(home)
    return config


def set_fault(
    home: Home, *, server_down: bool | None = None, hang_seconds: float | None = None
) -> None:
    faults: dict[str, Any] = {}
    if server_down is not None:
        faults["server_down"] = server_down
    if hang_seconds is not None:
        faults["hang_seconds"] = hang_seconds
    configure(home, faults=faults)


def set_node(home: Home, name: str | None = None, **switches: bool) -> None:
    """Mark a node (default: the first) down/up or offline/online, as its MoM dying would."""
    with home.locked():
        nodes = home.load_config()["nodes"]
        target = name or nodes[0]["name"]
        if not any(n["name"] == target for n in nodes):
            raise KeyError(f"no node named {target!r}")
        nodes = [dict(n, **switches) if n["name"] == target else n for n in nodes]
    configure(home, nodes=nodes)


def force_rerun(home: Home, job_ids: list[str]) -> list[list[Any]]:
    """Requeue running jobs as a manager's ``qrerun -W force`` would."""
    server = home.load_config()["server_name"]
    full = [j if "." in j else f"{j}.{server}" for j in job_ids]
    return list(client.request({"op": "rerun", "ids": full}, home, admin=True)["results"])


def set_next_seq(home: Home, seq: int) -> None:
    """Number the next job `seq`. The server reads serverdb.json when it starts, so this is
    refused once one runs (a test replaying a capture sets it before its first command)."""
    if client.server_running(home):
        raise RuntimeError("the server is running: set the next job id before the first command")
    home.server_priv.mkdir(parents=True, exist_ok=True)
    write_atomic(home.server_priv / "serverdb.json", json.dumps({"next_seq": seq}))


def stop(home: Home, timeout: float = 10.0) -> None:
    """Stop the server and every process it started; nothing of this home is left running."""
    if client.server_running(home):
        with contextlib.suppress(
            client.ServerUnavailable, client.ConnectionLost, OSError, ValueError
        ):
            client.request({"op": "shutdown"}, home, admin=True, start=False)
        deadline = time.monotonic() + timeout
        while client.server_running(home) and time.monotonic() < deadline:
            time.sleep(0.01)
        if client.server_running(home):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((home.server_priv / "server.pid").read_text()), signal.SIGKILL)
    kill_leftovers(home)


def kill_leftovers(home: Home) -> list[int]:
    """SIGKILL every process started with this home in its environment (jobs, their children,
    hung clients), except this process and its ancestors."""
    spared = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in spared:
        spared.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    killed = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) not in spared
            and job_process_alive(int(entry.name), home)
        ):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def status(home: Home) -> dict[str, Any]:
    running = client.server_running(home)
    pid = None
    if running:
        with contextlib.suppress(OSError, ValueError):
            pid = int((home.server_priv / "server.pid").read_text())
    return {"running": running, "pid": pid, "config": home.load_config()}


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
