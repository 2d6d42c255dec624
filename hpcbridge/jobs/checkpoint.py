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
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
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
# The names the wrapper gives (hpcbridge_ck_named in the template): nothing else is a checkpoint.
_NAME = re.compile(r"(corrupt-)?ckpt-[0-9]{8}T[0-9]{6}Z-[0-9]{6,9}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
# sha256sum's escapes in a name (a line starting with a backslash): \\, \n, and \r since 9.2.
_UNESCAPED = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}
_ESCAPE = re.compile(r"\\[\\nr]")
_DIGITS = re.compile(r"[0-9]{1,18}")
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


CONTINUED_STATUS = 75
"""Exit status of a run that reached its limit and handed the work to a job it submitted (on
PBS, where qrerun takes operator rights): EX_TEMPFAIL of sysexits.h, "try again later". Not 0,
so nothing waiting ``afterok`` on this job takes the unfinished work for done."""


def checkpoint_context(spec: JobSpec) -> dict[str, Any]:
    """The wrapper's commands for the template: shell code the user wrote, so not quoted."""
    if spec.checkpoint is None:
        return {}
    restart = spec.checkpoint.restart
    return {
        "checkpoint_command": ShellCode(spec.checkpoint.command.rstrip("\n")),
        "restart_command": None if restart is None else ShellCode(restart.rstrip("\n")),
        "continued_status": CONTINUED_STATUS,
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
        for line in _lines((folder / META).read_text(errors="surrogateescape")):
            key, _, value = line.partition("=")
            meta[key] = value
    except OSError as exc:
        problem: str | None = f"cannot read {META}: {exc.strerror}"
    else:
        problem = None if folder.name.startswith(PREFIX) else "marked corrupt at a restart"
        problem = _verify(folder) or problem
    created = _number(meta.get("created"))
    return Checkpoint(
        path=folder,
        created=None if created is None else datetime.fromtimestamp(created, UTC),
        job_id=meta.get("job"),
        attempt=_number(meta.get("attempt")),
        node=meta.get("node"),
        reason=meta.get("reason"),
        problem=problem,
    )


def _lines(text: str) -> list[str]:
    """Lines as bash reads them: split on "\n" only. str.splitlines() also splits on U+2028,
    U+0085 and others, which may stand in a file name; then the two readers would disagree."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _number(text: str | None) -> int | None:
    """A whole number written by the wrapper; anything else (other digits, signs, huge
    values someone planted) is no number. ``str.isdigit`` would pass "²", which int() refuses."""
    if text is None or not _DIGITS.fullmatch(text):
        return None
    return int(text)


def _verify(folder: Path) -> str | None:
    """What is wrong according to the manifest (sha256sum's format), or None.

    The manifest must list exactly the checkpoint's regular files, each under a relative path
    inside it: a line naming ``../x``, ``/etc/passwd`` or ``/dev/zero`` makes the checkpoint
    invalid rather than being read, and so does a file it leaves out, a symlink or a device.
    Files are hashed in chunks, so a large checkpoint costs no more memory than a small one.
    """
    try:
        text = (folder / MANIFEST).read_text(errors="surrogateescape")
    except OSError as exc:
        return f"cannot read {MANIFEST}: {exc.strerror}"
    listed: dict[str, str] = {}
    for line in _lines(text):
        escaped = line.startswith("\\")  # sha256sum escapes names holding \ or a newline
        digest, sep, name = line.removeprefix("\\").partition(" ")
        if not sep or not _DIGEST.fullmatch(digest) or name[:1] not in (" ", "*"):
            return f"{MANIFEST} has a malformed line {line!r}"
        name = name[1:]  # " " (text) or "*" (binary) before the name
        if escaped:
            name = _ESCAPE.sub(lambda match: _UNESCAPED[match.group()], name)
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            return f"{name}: outside the checkpoint"
        listed[str(relative)] = digest
    if not listed:
        return f"{MANIFEST} is empty"
    try:
        found = dict(_regular_files(folder))
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot list the checkpoint: {exc.strerror}"
    for name in sorted(listed.keys() - found.keys()):
        return f"./{name}: listed in the manifest but not a file of the checkpoint"
    for name in sorted(found.keys() - listed.keys()):
        return f"./{name}: not in the manifest"
    for name, digest in sorted(listed.items()):
        try:
            with found[name].open("rb") as data:
                actual = hashlib.file_digest(data, "sha256").hexdigest()
        except OSError as exc:
            return f"./{name}: {exc.strerror}"
        if actual != digest:
            return f"./{name}: checksum does not match"
    return None


def _regular_files(folder: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """(relative name, path) of every file under ``folder``, never following a link; a
    symlink, device, FIFO or socket anywhere raises ValueError naming it."""
    with os.scandir(folder) as entries:
        for entry in entries:
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from _regular_files(Path(entry.path), name + "/")
            elif entry.is_file(follow_symlinks=False):
                if name != MANIFEST:
                    yield name, Path(entry.path)
            else:
                raise ValueError(f"./{name}: not a regular file")


def list_checkpoints(directory: str | Path) -> list[Checkpoint]:
    """Every committed checkpoint, corrupt ones included, newest first. Only folders under a
    name the wrapper gives count (not symlinks): anything else in the directory is ignored."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint directory {str(folder)!r} does not exist")
    found = [
        read_checkpoint(entry)
        for entry in folder.iterdir()
        if _NAME.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()
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
    (max_restarts), ``continued`` (the job submitted to carry on where a PBS qrerun was
    refused) or ``finished``. ``attempt`` counts the runs of ``job_id`` the wrapper saw, from
    1, and goes on counting in a job that continues it.
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
        text = path.read_text(errors="replace")  # others may write the directory
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_events(text)


def parse_events(text: str) -> list[Event]:
    """The events of an attempts.log's text (read here, or fetched from a cluster)."""
    events = []
    for line in _lines(text):
        parts = line.split("\t")
        if len(parts) < 5 or _number(parts[1]) is None or _number(parts[3]) is None:
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
