"""Where the emulator keeps things ($PBS_EMULATOR_HOME) and its configuration (config.json).

The layout mirrors a real PBS_HOME (server_priv/accounting, server_logs, mom_logs, ...) so that
anything a test wants to look at sits where an admin would look for it on a real server.
Every read-modify-write of config.json happens under an fcntl lock, and every file the server
rewrites is replaced atomically, so concurrent commands never see half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import zlib
from pathlib import Path

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any


class HomeError(Exception):
    """The emulator cannot work at all (no PBS_EMULATOR_HOME, unreadable config)."""


def short_hostname() -> str:
    """What `hostname -s` prints: real PBS names the server and its jobs after it."""
    return socket.gethostname().split(".")[0]


def default_config() -> dict[str, Any]:
    """Settings used for every key that config.json leaves out (faithful PBS defaults)."""
    server = short_hostname()
    return {
        "server_name": server,
        "default_queue": "workq",
        "queues": {"workq": {}},
        "nodes": [{"name": server, "ncpus": 16, "mem": "64gb", "ngpus": 2}],
        "job_history_enable": True,
        "job_history_duration": 1209600,  # two weeks, PBS's default
        "json_output": True,  # False: an older qstat without -F
        "acl_roots": [],  # PBS refuses jobs from root unless it is listed here
        "managers": [],  # root is always a manager
        "kill_delay": 10,  # SIGTERM, then SIGKILL this many seconds later
        "node_fail_requeue": 310,  # seconds a node may be down before its jobs are requeued
        "exiting_seconds": 0.1,  # how long a job stays in state E
        "idle_exit_seconds": 30,  # the server exits after this long with nothing to do
        "user_home": None,  # HOME (and cwd) of jobs; None: the submitting user's home
        "max_array_size": 10000,
        "faults": {"server_down": False, "hang_seconds": 0},
    }


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` updated by `changes`, nested dicts merged key by key (a copy)."""
    out: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy of plain JSON data
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "queues":
            out[key] = merge(out[key], value)
        else:
            out[key] = json.loads(json.dumps(value))
    return out


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see either the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Lock:
    """A context manager holding an exclusive flock() on a file while it is entered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class Home:
    """The folders and files of one emulated PBS installation."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.config_path = self.root / "config.json"
        self.server_priv = self.root / "server_priv"
        self.jobs_dir = self.server_priv / "jobs"
        self.accounting_dir = self.server_priv / "accounting"
        self.server_logs = self.root / "server_logs"
        self.sched_logs = self.root / "sched_logs"
        self.mom_logs = self.root / "mom_logs"
        self.spool = self.root / "mom_priv" / "spool"
        self.aux = self.root / "mom_priv" / "aux"
        self.tmp = self.root / "mom_priv" / "tmp"
        self.undelivered = self.root / "undelivered"
        self.server_lock = self.server_priv / "server.lock"
        self.start_lock = self.server_priv / "start.lock"
        self.server_out = self.server_priv / "server.out"

    @classmethod
    def from_env(cls) -> Home:
        """The home named by $PBS_EMULATOR_HOME (required: every test has its own)."""
        root = os.environ.get("PBS_EMULATOR_HOME")
        if not root:
            raise HomeError("PBS_EMULATOR_HOME is not set (the PBS emulator needs a home folder)")
        return cls(root)

    def ensure(self) -> None:
        """Create the folder layout (idempotent)."""
        for folder in (
            self.jobs_dir,
            self.accounting_dir,
            self.server_logs,
            self.sched_logs,
            self.mom_logs,
            self.spool,
            self.aux,
            self.tmp,
            self.undelivered,
        ):
            folder.mkdir(parents=True, exist_ok=True)

    def socket_name(self, admin: bool = False) -> str:
        """Abstract Unix socket names: no path-length limit, nothing left on disk."""
        path = str(self.root).encode()
        tag = f"{zlib.crc32(path):08x}{zlib.adler32(path):08x}{len(path):x}"
        return f"\0pbs-emulator-{tag}{'-admin' if admin else ''}"

    def locked(self, name: str = "config.lock") -> Lock:
        """An exclusive fcntl lock on a lock file in the home (``with home.locked(): ...``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Lock(self.root / name)

    def load_config(self) -> dict[str, Any]:
        """config.json merged over the defaults."""
        try:
            raw = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as exc:
            raise HomeError(f"cannot read {self.config_path}: {exc}") from exc
        config = merge(default_config(), raw)
        if "nodes" not in raw:
            config["nodes"] = [dict(config["nodes"][0], name=config["server_name"])]
        return config

    def update_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into config.json under the lock; returns the full new config."""
        with self.locked():
            try:
                raw = json.loads(self.config_path.read_text())
            except FileNotFoundError:
                raw = {}
            raw = merge(raw, changes)
            write_atomic(self.config_path, json.dumps(raw, indent=2) + "\n")
        return self.load_config()
