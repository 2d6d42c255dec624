"""One status snapshot per site, shared by every process of the user on this machine.

A campaign of 100 simulations, each watching its own job, would ask the scheduler 100 times
per poll; controllers have gone down under such squeue storms. Instead the processes share
one file (with its lock, in the user's runtime folder, per site) holding the scheduler's
whole listing of the user's jobs (``squeue --me``, ``qstat -f -t``) and when it was taken.
A process whose poll interval the snapshot is younger than reads it; one that finds it stale
refreshes it for everyone, under an flock tried without blocking: the others watch the file
for the new snapshot meanwhile, and after a moment make do with the stale one (a refresh
that slow means a struggling scheduler, which more calls would only slow further). The file
lives where the Cluster runs, so SSH sites share it as well.

Jobs the listing lacks (they left squeue, or belong to another user) and exit codes, which
squeue does not show, come from the backend's accounting path in one call per process. A job
is not taken as gone from a snapshot older than the process's first question about it: it
may have been submitted after the snapshot was taken, and the next one will list it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeGuard, TypeVar, runtime_checkable
from urllib.parse import quote

from pydantic import ValidationError

from hpcbridge.backends.base import with_array_totals
from hpcbridge.errors import ConfigError
from hpcbridge.files import write_atomically
from hpcbridge.jobs.state import JobInfo

log = logging.getLogger(__name__)

_FORMAT = 1
# A refresh is one squeue (tens of ms); waiting longer than this for another process's
# refresh means the scheduler is slow, and a stale answer is better than one more call.
_LOCK_WAIT_S = 1.0
_LOCK_RETRY_S = 0.02
# A snapshot stamped further ahead than this came from a clock that has since gone back.
_CLOCK_SLACK_S = 1.0
_SHORTEST_SLEEP_S = 0.01

_Row = TypeVar("_Row")


@runtime_checkable
class ListingBackend(Protocol):
    """What shared polling needs of a backend beyond Backend."""

    def list_jobs(self) -> dict[str, JobInfo]:
        """Every job of this user that the scheduler lists now, from one call."""
        ...

    def complete(self, job_ids: Sequence[str], listed: dict[str, JobInfo]) -> dict[str, JobInfo]:
        """The status of ``job_ids`` given the listing's rows for them: what it lacks (jobs
        that left it, exit codes) from accounting or history, in at most one call."""
        ...


def cache_directory() -> Path:
    """The user's private folder for snapshots: $XDG_RUNTIME_DIR/hpcbridge (a tmpfs the
    login session owns), else /tmp/hpcbridge-UID; 0700, and refused if another user owns it
    (a folder planted in /tmp could otherwise feed this process false job states)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        folder = Path(runtime) / "hpcbridge"
    else:
        folder = Path(tempfile.gettempdir()) / f"hpcbridge-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise ConfigError(f"shared polling: cannot make the folder {folder}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(
            f"shared polling: {folder} is not a folder of this user; remove it, or set "
            "XDG_RUNTIME_DIR to a private folder"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)
    return folder


@dataclass(frozen=True)
class _View:
    """What one snapshot says about the jobs asked for."""

    taken: float  # time.time() when the listing was asked for
    listed: dict[str, JobInfo]  # the rows of the jobs asked for (an array's tasks too)


class SharedPoll:
    """Status of a site's jobs through the shared snapshot; one per Cluster."""

    def __init__(
        self, backend: ListingBackend, site_name: str, directory: Path | None = None
    ) -> None:
        self.backend = backend
        folder = directory or cache_directory()
        stem = f"status-{quote(site_name, safe='')}"
        self.path = folder / f"{stem}.json"
        self.lock_path = folder / f"{stem}.lock"
        self._asked: dict[str, float] = {}  # job id -> when this process first asked
        self._taken = 0.0  # when the snapshot last used was taken

    def status(self, job_ids: Sequence[str], *, max_age: float) -> dict[str, JobInfo]:
        """The state of ``job_ids`` from a snapshot at most ``max_age`` seconds old (or
        older, if it shows every one of them ended). A job the snapshot does not list yet,
        because it may predate the job, is left out, as a scheduler that does not know the
        job yet would."""
        now = time.time()
        for job_id in job_ids:
            self._asked.setdefault(job_id, now)
        view = self._load(job_ids)
        if not self._serves(view, job_ids, max_age):
            view = self._refresh(job_ids, max_age)
        self._taken = view.taken
        listed = with_array_totals(job_ids, dict(view.listed))
        known = [j for j in job_ids if j in listed or view.taken >= self._asked[j]]
        return self.backend.complete(known, view.listed)

    def next_poll(self, max_age: float) -> float:
        """Seconds until the snapshot last used is ``max_age`` old: waking then finds it
        stale, so a change is seen within ``max_age`` of happening. A snapshot already
        older (it answered because it showed every job ended) gives a whole ``max_age``."""
        remaining = self._taken + max_age - time.time()
        return max(remaining, _SHORTEST_SLEEP_S) if remaining > 0 else max_age

    def _serves(
        self, view: _View | None, job_ids: Sequence[str], max_age: float
    ) -> TypeGuard[_View]:
        """Whether ``view`` may answer: young enough, or no fresher one could say more
        (every job listed as ended, or already absent when it was asked about)."""
        if view is None:
            return False
        age = time.time() - view.taken
        if age < -_CLOCK_SLACK_S:
            return False
        if age < max_age:
            return True
        listed = with_array_totals(job_ids, dict(view.listed))
        return all(
            listed[job_id].state.is_terminal
            if job_id in listed
            else view.taken >= self._asked[job_id]
            for job_id in job_ids
        )

    def _refresh(self, job_ids: Sequence[str], max_age: float) -> _View:
        """A snapshot that serves, taken by this process if none is being taken; else the
        one another process is taking (or, after _LOCK_WAIT_S, the stale one)."""
        with self._lock_file() as lock:
            give_up = time.monotonic() + _LOCK_WAIT_S
            while not _try_lock(lock):
                time.sleep(_LOCK_RETRY_S)
                view = self._load(job_ids)
                if self._serves(view, job_ids, max_age):
                    return view
                if view is not None and time.monotonic() >= give_up:
                    return view
            view = self._load(job_ids)  # another process may have just finished a refresh
            if self._serves(view, job_ids, max_age):
                return view
            taken = time.time()
            jobs = self.backend.list_jobs()
            self._store(taken, jobs)
            return _View(taken, _select(job_ids, jobs, lambda info: info.array_job_id))

    def _load(self, job_ids: Sequence[str]) -> _View | None:
        """The snapshot on file with the rows of ``job_ids``; None if there is none, or it is
        unreadable (truncated, corrupt, another format): the next refresh rewrites it."""
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable status snapshot %s: %s", self.path, exc)
            return None
        try:
            if document["format"] != _FORMAT:
                return None
            taken = float(document["taken"])
            rows = {row["job_id"]: row for row in document["jobs"]}
            # Only the rows asked for are validated: a read costs little more than json.loads
            # however many jobs the user has.
            chosen = _select(job_ids, rows, lambda row: row.get("array_job_id"))
            listed = {job_id: JobInfo.model_validate(row) for job_id, row in chosen.items()}
            return _View(taken, listed)
        except (AttributeError, KeyError, TypeError, ValueError, ValidationError) as exc:
            log.warning("ignoring the unreadable status snapshot %s: %s", self.path, exc)
            return None

    def _store(self, taken: float, jobs: Mapping[str, JobInfo]) -> None:
        """Write the snapshot for the others; if the folder refuses (full, removed at logout),
        this process still has its answer, and the next refresher tries again."""
        rows = [info.model_dump(mode="json", exclude_defaults=True) for info in jobs.values()]
        document = {"format": _FORMAT, "taken": taken, "jobs": rows}
        try:
            write_atomically(self.path, json.dumps(document, separators=(",", ":")).encode())
            self.path.chmod(0o600)
        except OSError as exc:
            log.warning("could not write the status snapshot %s: %s", self.path, exc)

    @contextlib.contextmanager
    def _lock_file(self) -> Iterator[int]:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            descriptor = os.open(self.lock_path, flags, 0o600)
        except OSError as exc:
            raise ConfigError(f"shared polling: cannot open {self.lock_path}: {exc}") from exc
        try:
            yield descriptor
        finally:
            os.close(descriptor)  # releases the flock too


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _select(
    job_ids: Sequence[str], rows: Mapping[str, _Row], array_of: Callable[[_Row], object]
) -> dict[str, _Row]:
    """The rows of the jobs asked for, and of the tasks of arrays asked for: what a squeue
    or qstat of those ids would list."""
    wanted = set(job_ids)
    return {
        job_id: row for job_id, row in rows.items() if job_id in wanted or array_of(row) in wanted
    }
