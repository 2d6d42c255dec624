"""The server's memory: jobs, running processes, nodes, and how they reach the disk.

Only the server process changes this state, one request or event at a time, so there are no
races inside it; changed jobs are written back (atomically, one file per job) at the end of
each loop turn, which keeps a submit to one small file write.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from pbs_emulator import ids, units
from pbs_emulator.common import listed
from pbs_emulator.home import Home, write_atomic
from pbs_emulator.logs import Logs
from pbs_emulator.model import Job
from pbs_emulator.mom import Mom, Proc, user_home


@dataclass
class Node:
    """One execution host: its size, admin state and what running jobs hold of it."""

    name: str
    ncpus: int
    mem_kb: int
    ngpus: int
    down: bool = False
    offline: bool = False
    down_since: float | None = None
    cpus_used: dict[int, str] = field(default_factory=dict)
    mem_used: int = 0
    gpus_used: set[int] = field(default_factory=set)
    last_state_change: float = field(default_factory=time.time)
    last_used: float | None = None

    @property
    def usable(self) -> bool:
        return not (self.down or self.offline)

    @property
    def free_cpus(self) -> list[int]:
        return [c for c in range(self.ncpus) if c not in self.cpus_used]

    @property
    def free_mem(self) -> int:
        return self.mem_kb - self.mem_used

    @property
    def free_gpus(self) -> list[int]:
        return [g for g in range(self.ngpus) if g not in self.gpus_used]

    def state_text(self) -> str:
        if self.down:
            return "down"
        if self.offline:
            return "offline"
        return "job-busy" if self.ncpus and not self.free_cpus else "free"


def node_from_config(entry: dict[str, Any], server: str) -> Node:
    return Node(
        name=str(entry.get("name", server)),
        ncpus=int(entry.get("ncpus", 16)),
        mem_kb=units.parse_size_kb(str(entry.get("mem", "64gb"))) or 0,
        ngpus=int(entry.get("ngpus", 0)),
        down=bool(entry.get("down", False)),
        offline=bool(entry.get("offline", False)),
    )


class ServerState:
    """Everything the server knows, plus the helpers every operation needs."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.config = home.load_config()
        self.server: str = self.config["server_name"]
        self.jobs: dict[str, Job] = {}
        self.procs: dict[str, Proc] = {}
        self.exiting: dict[str, float] = {}
        self.dirty: set[str] = set()
        self.removed: set[str] = set()
        self.next_seq = 0
        self.logs = Logs(home, self.server)
        self.mom = Mom(home, self.server)
        self.nodes = {
            n.name: n for n in (node_from_config(e, self.server) for e in self.nodes_config())
        }
        self.wants_schedule = True
        self.started = time.time()

    # ---- configuration -------------------------------------------------------------------
    def nodes_config(self) -> list[dict[str, Any]]:
        return list(self.config.get("nodes") or [{"name": self.server}])

    def reload(self) -> None:
        """Re-read config.json: queues, limits, faults and node up/down/offline switches."""
        self.config = self.home.load_config()
        now = time.time()
        for entry in self.nodes_config():
            fresh = node_from_config(entry, self.server)
            node = self.nodes.setdefault(fresh.name, fresh)
            if (fresh.down, fresh.offline) != (node.down, node.offline):
                node.last_state_change = now
            if fresh.down and not node.down:
                node.down_since = now
            node.down, node.offline = fresh.down, fresh.offline
            node.ncpus, node.mem_kb, node.ngpus = fresh.ncpus, fresh.mem_kb, fresh.ngpus
        self.wants_schedule = True

    @property
    def history(self) -> bool:
        return bool(self.config.get("job_history_enable", True))

    def job_home(self) -> str:
        return user_home(self.config.get("user_home"))

    def is_manager(self, user: str) -> bool:
        """Root or listed in ``managers`` (``user@host`` entries, as qmgr sets them)."""
        return user == "root" or listed(user, self.config.get("managers"))

    def is_operator(self, user: str) -> bool:
        """Listed in ``operators``, or a manager: operators may qrerun, set and release o
        holds, suspend, and act on others' jobs, but only managers touch s holds."""
        return self.is_manager(user) or listed(user, self.config.get("operators"))

    def queues(self) -> dict[str, dict[str, Any]]:
        return dict(self.config.get("queues") or {"workq": {}})

    # ---- jobs ------------------------------------------------------------------------------
    def full_id(self, text: str) -> str | None:
        """The canonical id for a user-given id, None if malformed or at another server."""
        parsed = ids.parse(text)
        if parsed is None or parsed.at_other_server(self.server):
            return None
        return parsed.full(self.server)

    def pending_subjob(self, job_id: str) -> tuple[Job, int] | None:
        """(array, index) for a subjob id that exists but has no record of its own."""
        split = ids.split_subjob(job_id)
        if split is None:
            return None
        parent = self.jobs.get(split[0])
        if parent is None or str(split[1]) not in parent.sub_states:
            return None
        return parent, split[1]

    def touch(self, job: Job, now: float | None = None) -> None:
        job.mtime = int(time.time() if now is None else now)
        self.dirty.add(job.id)

    def remove(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        self.dirty.discard(job.id)
        self.removed.add(job.id)

    def script_path(self, job: Job) -> Any:
        return self.home.jobs_dir / f"{job.seq}.SC"

    # ---- persistence -----------------------------------------------------------------------
    def load(self) -> None:
        db = self.home.server_priv / "serverdb.json"
        if db.exists():
            self.next_seq = int(json.loads(db.read_text()).get("next_seq", 0))
        for path in self.home.jobs_dir.glob("*.json"):
            try:
                job = Job.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError, KeyError):
                continue
            self.jobs[job.id] = job

    def take_seq(self) -> int:
        """The next job sequence number, written down at once (rejected submits use one up)."""
        seq = self.next_seq
        limit = int(self.config.get("max_job_sequence_id", 9999999))
        self.next_seq = 0 if seq >= limit else seq + 1
        write_atomic(
            self.home.server_priv / "serverdb.json", json.dumps({"next_seq": self.next_seq})
        )
        return seq

    def flush(self) -> None:
        for job_id in self.dirty:
            job = self.jobs.get(job_id)
            if job is not None:
                write_atomic(self.home.jobs_dir / f"{job_id}.json", job.to_json())
        for job_id in self.removed:
            (self.home.jobs_dir / f"{job_id}.json").unlink(missing_ok=True)
        self.dirty.clear()
        self.removed.clear()

    def pid_file(self) -> None:
        write_atomic(self.home.server_priv / "server.pid", f"{os.getpid()}\n")
