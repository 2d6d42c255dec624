"""The server's record of one job, array or subjob, and the state/substate codes it moves through.

A Job holds typed fields, not PBS attribute strings: ``status.py`` renders them as the ordered
attribute list qstat prints, following what the reference shows for each state.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from pbs_emulator.resources import Chunk

# Substates as OpenPBS numbers them (the reference shows 10, 20, 22, 30, 42, 43, 70, 91-93).
QUEUED, HELD, DEPNHOLD, WAITING = 10, 20, 22, 30
RUNNING, SUSPENDED, EXITING, STAGEOUT, RERUN = 42, 43, 50, 51, 60
BEGUN, TERMINATED, FINISHED, FAILED = 70, 91, 92, 93

# Exit statuses PBS itself sets (Reference Guide table "Job Exit Codes").
JOB_EXEC_RERUN = -11
JOB_EXEC_RERUN_MS_FAIL = -20
JOB_EXEC_KILL_WALLTIME = -29
SIGNAL_BASE = 256  # a job killed by signal N exits 256 + N

HOLD_ORDER = "soup"  # as OpenPBS prints them (multi-hold-types_cases.txt: su, ou, sou)


@dataclass
class Allocation:
    """What one chunk got: the node, its cpu slots, memory and gpu indices."""

    node: str
    cpus: list[int]
    mem_kb: int
    gpus: list[int]
    resources: list[tuple[str, str]]


@dataclass
class Job:
    """One job as the server keeps it (persisted as JSON in server_priv/jobs)."""

    id: str
    seq: int
    name: str
    owner: str
    group: str
    host: str
    queue: str
    state: str
    substate: int
    ctime: int
    mtime: int
    qtime: int
    resource_list: dict[str, str]
    chunks: list[Chunk]
    variables: list[tuple[str, str]]
    workdir: str
    out_path: str
    err_path: str
    etime: int | None = None
    stime: int | None = None
    obittime: int | None = None
    exec_time: int | None = None
    history_timestamp: int | None = None
    hold: str = ""
    depend: list[tuple[str, list[str]]] = field(default_factory=list)
    join: str = "n"
    keep: str = "n"
    mail_points: str = "a"
    mail_users: str | None = None
    account: str | None = None
    project: str = "_pbs_project_default"
    priority: int = 0
    rerunable: bool = True
    shell: str | None = None
    submit_args: str | None = None
    comment: str | None = None
    run_count: int = 0
    exit_status: int | None = None
    session_id: int | None = None
    jobdir: str | None = None
    exec_host: str | None = None
    exec_vnode: str | None = None
    allocation: list[Allocation] = field(default_factory=list)
    used: dict[str, str] | None = None
    run_comment: str | None = None
    # arrays: the parent keeps the indices and the state of each subjob
    array_spec: str | None = None
    array_indices: list[int] = field(default_factory=list)
    max_run: int | None = None
    sub_states: dict[str, str] = field(default_factory=dict)
    sub_exit: dict[str, int] = field(default_factory=dict)
    parent: str | None = None
    index: int | None = None
    # how the current or last run ended (walltime, delete, rerun, nodefail) and who asked
    kill_reason: str | None = None
    kill_by: str | None = None
    node_lost_at: float | None = None
    walltime_used: float = 0.0
    ended: bool = False

    @property
    def is_array(self) -> bool:
        return self.array_spec is not None

    @property
    def is_subjob(self) -> bool:
        return self.parent is not None

    @property
    def finished(self) -> bool:
        return self.state in ("F", "X")

    @property
    def active(self) -> bool:
        """Running as far as resources go: R, S, or E before the process is gone."""
        return self.state in ("R", "S") or (self.state == "E" and self.session_id is not None)

    def hold_types(self) -> str:
        return "".join(c for c in HOLD_ORDER if c in self.hold) or "n"

    def depend_text(self, server: str) -> str | None:
        """The depend attribute: ``afterok:1.vm@vm:2.vm@vm,beforeok:3.vm@vm``."""
        parts = [f"{kind}:" + ":".join(f"{j}@{server}" for j in ids) for kind, ids in self.depend]
        return ",".join(parts) or None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=Chunk.to_json)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        data = dict(data)
        data["chunks"] = [Chunk(count, [tuple(r) for r in res]) for count, res in data["chunks"]]
        data["allocation"] = [
            Allocation(**{**a, "resources": [tuple(r) for r in a["resources"]]})
            for a in data["allocation"]
        ]
        data["variables"] = [tuple(v) for v in data["variables"]]
        data["depend"] = [(kind, list(ids)) for kind, ids in data["depend"]]
        return cls(**data)
