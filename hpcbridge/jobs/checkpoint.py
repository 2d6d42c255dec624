"""Checkpoint/restart: what the bash wrapper (templates/common/checkpoint.sh.j2) writes, read back.

The wrapper runs on compute nodes, where hpcbridge is usually not installed, so it is plain
bash and coreutils and this module only reads its output. A checkpoint directory holds::

    ckpt-20261123T170405Z-000007/   one committed checkpoint: the files the user's checkpoint
        .hpcbridge-meta             command wrote, plus created=<epoch>, job=, attempt=, node=,
        .hpcbridge-manifest         reason=periodic|limit, and sha256sum lines for every file
    corrupt-ckpt-...                one whose manifest failed at a restart: kept, never used
    .tmp-XXXXXX                     a checkpoint being written (or left by a run that died)
    attempts.log                    one tab-separated line per event (see Event)
    finished                        the work ended with status 0; later runs end at once

A checkpoint appears under its ``ckpt-`` name only by rename, after its manifest was written
and its files synced, so a ``ckpt-`` directory is complete unless something changed it later,
which its manifest then shows. Names sort oldest to newest (UTC time, then sequence number).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcbridge.errors import CheckpointError
from hpcbridge.jobs.rendering import ShellCode
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobState

if TYPE_CHECKING:
    from hpcbridge.jobs.records import AttemptRecord

MANIFEST = ".hpcbridge-manifest"
META = ".hpcbridge-meta"
ATTEMPTS_LOG = "attempts.log"
FINISHED = "finished"
PREFIX = "ckpt-"
CORRUPT_PREFIX = "corrupt-"
# Ends of a run that lose the work done since the last checkpoint (a time-limit requeue
# checkpoints first, so it loses almost nothing, but it is measured the same way).
FAILURES = frozenset(
    {
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.REQUEUED,
        JobState.TIMEOUT,
        JobState.FAILED,
        JobState.CANCELLED,
    }
)


def checkpoint_context(spec: JobSpec) -> dict[str, Any]:
    """The wrapper's commands for the template: shell code the user wrote, so not quoted."""
    if spec.checkpoint is None:
        return {}
    restart = spec.checkpoint.restart
    return {
        "checkpoint_command": ShellCode(spec.checkpoint.command.rstrip("\n")),
        "restart_command": None if restart is None else ShellCode(restart.rstrip("\n")),
    }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint directory and what its metadata and manifest say."""

    path: Path
    created: datetime | None
    job_id: str | None
    attempt: int | None
    node: str | None
    reason: str | None
    problem: str | None  # None when the manifest verifies

    @property
    def name(self) -> str:
        """The directory name, e.g. ckpt-20261123T170405Z-000007."""
        return self.path.name

    @property
    def valid(self) -> bool:
        """Complete and unchanged since it was committed."""
        return self.problem is None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint's metadata and check every file against its manifest."""
    folder = Path(path)
    meta: dict[str, str] = {}
    try:
        for line in (folder / META).read_text().splitlines():
            key, _, value = line.partition("=")
            meta[key] = value
    except OSError as exc:
        problem: str | None = f"cannot read {META}: {exc.strerror}"
    else:
        problem = None if folder.name.startswith(PREFIX) else "marked corrupt at a restart"
        problem = _verify(folder) or problem
    created = meta.get("created", "")
    attempt = meta.get("attempt", "")
    return Checkpoint(
        path=folder,
        created=datetime.fromtimestamp(int(created), UTC) if created.isdigit() else None,
        job_id=meta.get("job"),
        attempt=int(attempt) if attempt.isdigit() else None,
        node=meta.get("node"),
        reason=meta.get("reason"),
        problem=problem,
    )


def _verify(folder: Path) -> str | None:
    """What is wrong according to the manifest (sha256sum's format), or None."""
    try:
        lines = (folder / MANIFEST).read_text().splitlines()
    except OSError as exc:
        return f"cannot read {MANIFEST}: {exc.strerror}"
    if not lines:
        return f"{MANIFEST} is empty"
    for line in lines:
        escaped = line.startswith("\\")  # sha256sum escapes names holding \ or a newline
        digest, sep, name = line.removeprefix("\\").partition(" ")
        if not sep or len(digest) != 64:
            return f"{MANIFEST} has a malformed line {line!r}"
        name = name[1:]  # " " (text) or "*" (binary) before the name
        if escaped:
            name = name.replace("\\n", "\n").replace("\\\\", "\\")
        try:
            actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        except OSError as exc:
            return f"{name}: {exc.strerror}"
        if actual != digest:
            return f"{name}: checksum does not match"
    return None


def list_checkpoints(directory: str | Path) -> list[Checkpoint]:
    """Every committed checkpoint, corrupt ones included, newest first."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint directory {str(folder)!r} does not exist")
    found = [
        read_checkpoint(entry)
        for entry in folder.iterdir()
        if entry.is_dir() and entry.name.startswith((PREFIX, CORRUPT_PREFIX + PREFIX))
    ]
    return sorted(found, key=lambda c: c.name.removeprefix(CORRUPT_PREFIX), reverse=True)


def is_finished(directory: str | Path) -> bool:
    """True once a run of the job ended its work with status 0 (the wrapper's mark)."""
    return (Path(directory) / FINISHED).is_file()


def latest_valid(directory: str | Path) -> Checkpoint:
    """The checkpoint a restart would resume from: the newest one whose manifest verifies."""
    for checkpoint in list_checkpoints(directory):
        if checkpoint.valid:
            return checkpoint
    raise CheckpointError(f"no valid checkpoint in {str(directory)!r}")


@dataclass(frozen=True, slots=True)
class Event:
    """One line of attempts.log.

    ``kind`` is ``start`` (fields: checkpoint resumed from or "-", its creation epoch or "-"),
    ``commit`` (name, creation epoch, reason), ``corrupt`` (name), ``refused``
    (max_restarts) or ``finished``. ``attempt`` counts the runs of ``job_id`` the wrapper saw,
    from 1.
    """

    kind: str
    time: datetime
    job_id: str
    attempt: int
    node: str
    fields: tuple[str, ...]


def read_events(directory: str | Path) -> list[Event]:
    """attempts.log in order; a line cut short by a crash is skipped."""
    path = Path(directory) / ATTEMPTS_LOG
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from exc
    events = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 5 or not parts[1].isdigit() or not parts[3].isdigit():
            continue
        kind, epoch, job_id, attempt, node, *fields = parts
        moment = datetime.fromtimestamp(int(epoch), UTC)
        events.append(Event(kind, moment, job_id, int(attempt), node, tuple(fields)))
    return events


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """One run of a checkpointed job: how it ended, and what its failure cost."""

    attempt: int
    state: JobState
    node: str | None
    start: datetime | None
    end: datetime | None
    resumed_from: str | None
    checkpoints: int
    lost_work_s: float | None  # failure minus the last checkpoint (or the start) of the run
    recovery_s: float | None  # the next run's start minus this run's end


def attempt_history(directory: str | Path, runs: Sequence[AttemptRecord]) -> list[AttemptSummary]:
    """The scheduler's runs of one job (sacct --duplicates, or the ledger's attempts) joined
    with the wrapper's log: measured lost work and recovery time per run.

    A run's own events are those logged between its start and end; the log has its own clock
    (the node's), so a second of slack on each side absorbs the rounding of both.
    """
    events = read_events(directory)
    started_runs = sorted(
        ((run, run.start) for run in runs if run.start is not None),
        key=lambda pair: pair[0].attempt,
    )
    history = []
    for number, (run, start) in enumerate(started_runs):
        end = run.end
        mine = [e for e in events if e.job_id == run.job_id and _within(e.time, start, end)]
        started = next((e for e in mine if e.kind == "start"), None)
        commits = [e.time for e in mine if e.kind == "commit"]
        lost = None
        if end is not None and run.state in FAILURES:
            lost = max(0.0, (end - max([start, *commits])).total_seconds())
        recovery = None
        if end is not None and number + 1 < len(started_runs):
            recovery = (started_runs[number + 1][1] - end).total_seconds()
        resumed = started.fields[0] if started and started.fields[:1] != ("-",) else None
        history.append(
            AttemptSummary(
                attempt=run.attempt,
                state=run.state,
                node=started.node if started else run.node_list,
                start=start,
                end=end,
                resumed_from=resumed,
                checkpoints=len(commits),
                lost_work_s=lost,
                recovery_s=recovery,
            )
        )
    return history


def _within(moment: datetime, start: datetime, end: datetime | None) -> bool:
    slack = 1.0
    after_start = (moment - start).total_seconds() >= -slack
    return after_start and (end is None or (moment - end).total_seconds() <= slack)
