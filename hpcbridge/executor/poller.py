"""One background thread per executor: it watches every unfinished task of that executor with
one scheduler status call per poll, however many futures are waiting, and settles each
future once its result file appears or its job ends without one.

The result files are looked at first, all of a poll's in one go (a finished function is
settled without asking the scheduler at all; over SFTP that is one listing, see task_files);
polls are quick after a change and back off while nothing happens. A checkpointable call
whose job ended by handing its work to a job it submitted (PBS refused it qrerun) is not
settled: the task follows the call into that job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Protocol, runtime_checkable

from hpcbridge.errors import HpcBridgeError, JobNotFound
from hpcbridge.executor import outcome
from hpcbridge.executor.task_files import LOCAL, TaskFiles
from hpcbridge.jobs.state import JobInfo, JobState

log = logging.getLogger(__name__)

FIRST_POLL_S = 0.25
LONGEST_POLL_S = 5.0
# A job just submitted may not show up yet; this many polls without it are forgiven.
MISSING_POLLS_FORGIVEN = 5
# A job that ran to its end wrote its result before exiting; on a shared filesystem the file
# may show here a little after the scheduler says so.
RESULT_GRACE_S = 10.0
_RAN = frozenset({JobState.COMPLETED, JobState.FAILED})

Status = Callable[[Sequence[str]], dict[str, JobInfo]]


@dataclass(frozen=True)
class Task:
    """A submitted call: its job, the folder its files are in, and the future it settles."""

    job_id: str
    folder: PurePath
    future: Future[Any]


@runtime_checkable
class _Labelled(Protocol):
    """A future that names its job (the executor's TaskFuture), renamed when the call's
    work moves on to another job."""

    job_id: str


class Poller:
    """Settles the futures of one executor's tasks from one thread (started on first use)."""

    def __init__(self, status: Status, files: TaskFiles = LOCAL) -> None:
        self._status = status
        self._files = files
        self._tasks: dict[str, Task] = {}
        self._missing: dict[str, int] = {}
        self._ended_at: dict[str, float] = {}
        self._moved: list[Task] = []  # this poll's tasks whose work went on in another job
        self._changed = threading.Condition()
        self._fresh = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def track(self, tasks: Iterable[Task]) -> None:
        """Watch these tasks too; the next poll comes at once."""
        with self._changed:
            self._tasks.update((task.job_id, task) for task in tasks)
            self._fresh = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="hpcbridge-executor-poller", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def unfinished(self) -> list[Task]:
        """The tasks whose futures are not settled yet."""
        with self._changed:
            return [task for task in self._tasks.values() if not task.future.done()]

    def stop(self, wait: bool) -> None:
        """End the thread once every tracked task is settled (at once if none is left)."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
            thread = self._thread
        if wait and thread is not None:
            thread.join()

    def _loop(self) -> None:
        interval = FIRST_POLL_S
        while True:
            with self._changed:
                while not self._tasks and not self._stopping:
                    self._changed.wait()
                if not self._tasks:
                    return
                tasks = list(self._tasks.values())
                self._fresh = False
            try:
                settled = self._poll(tasks)
            except Exception as exc:
                settled = _after_failed_poll(tasks, exc)
            with self._changed:
                for job_id in settled:
                    self._tasks.pop(job_id, None)
                    self._missing.pop(job_id, None)
                    self._ended_at.pop(job_id, None)
                self._tasks.update((task.job_id, task) for task in self._moved)
                self._moved.clear()
                interval = FIRST_POLL_S if settled else min(interval * 1.5, LONGEST_POLL_S)
                if not self._fresh and self._tasks:
                    self._changed.wait(interval)

    def _poll(self, tasks: list[Task]) -> list[str]:
        """One round: result files first, then one status call for the rest; returns the
        job ids settled (or cancelled by their owner) this round."""
        settled = [task.job_id for task in tasks if task.future.done()]  # cancelled, say
        open_ = [task for task in tasks if not task.future.done()]
        finished = self._files.finished([task.folder for task in open_])
        waiting = []
        for task in open_:
            if task.folder in finished:
                self._returned(task)
                settled.append(task.job_id)
            else:
                waiting.append(task)
        if not waiting:
            return settled
        try:
            infos = self._status([task.job_id for task in waiting])
        except HpcBridgeError as exc:
            if exc.transient:
                log.warning("executor poll failed, trying again: %s", exc)
                return settled
            for task in waiting:
                _fail(task, exc)
            return settled + [task.job_id for task in waiting]
        now = time.monotonic()
        for task in waiting:
            if self._ended(task, infos.get(task.job_id), now):
                settled.append(task.job_id)
        return settled

    def _ended(self, task: Task, info: JobInfo | None, now: float) -> bool:
        """Settle ``task`` if its job is over (or lost); False while it may still report."""
        if info is None:
            self._missing[task.job_id] = self._missing.get(task.job_id, 0) + 1
            if self._missing[task.job_id] <= MISSING_POLLS_FORGIVEN:
                return False
            _fail(task, JobNotFound(f"job {task.job_id} vanished from the scheduler"))
            return True
        self._missing.pop(task.job_id, None)
        if not info.state.is_terminal:
            return False
        has_result = self._files.has_result(task.folder)
        successor = (
            None if has_result else outcome.continued_in(task.job_id, task.folder, self._files)
        )
        if successor is not None:
            log.info("job %s handed its call on to job %s", task.job_id, successor)
            if isinstance(task.future, _Labelled):
                task.future.job_id = successor  # its cancel() must reach the job now running
            self._moved.append(Task(successor, task.folder, task.future))
            return True
        if info.state in _RAN and not has_result:
            ended = self._ended_at.setdefault(task.job_id, now)
            if now - ended < RESULT_GRACE_S:
                return False
        if has_result:
            self._returned(task)
        else:
            _fail(task, outcome.no_result(task.job_id, task.folder, info, self._files))
        return True

    def _returned(self, task: Task) -> None:
        """Settle the future from the result file: its value, or what it raised. A task that
        returned leaves no files behind; one that did not keeps them for its owner to see."""
        if not task.future.set_running_or_notify_cancel():
            return
        try:
            value = outcome.returned(task.job_id, task.folder, self._files)
        except BaseException as exc:
            task.future.set_exception(exc)
            return
        self._files.remove(task.folder)
        task.future.set_result(value)


def _after_failed_poll(tasks: list[Task], error: Exception) -> list[str]:
    """The job ids settled by a poll that broke. A transient error (the connection dropped
    while the tasks' files were read) is tried again at the next poll; any other fails every
    future not settled yet, as its waiter must hear of it, not wait for ever."""
    if isinstance(error, HpcBridgeError) and error.transient:
        log.warning("executor poll failed, trying again: %s", error)
    else:
        log.error("executor poll failed", exc_info=error)
        for task in tasks:
            _fail(task, error)
    return [task.job_id for task in tasks if task.future.done()]


def _fail(task: Task, error: BaseException) -> None:
    if not task.future.done() and task.future.set_running_or_notify_cancel():
        task.future.set_exception(error)
