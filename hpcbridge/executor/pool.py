"""``Cluster.executor()``: a concurrent.futures.Executor whose calls are jobs.

Each call gets a folder under the executor's own (on a filesystem the compute nodes share):
its pickled call goes in before submission, the worker writes the result and its stderr
beside it. The client reaches these folders through task_files: on its own filesystem, or
over SFTP when the site says the cluster does not share it (the paths are then the
cluster's). ``map`` submits all its calls in one ``Cluster.submit_many`` (one job array);
the futures are settled by the executor's one poller thread.

A checkpointable call (one whose function has a ``checkpoint`` method, see
hpcbridge.executor.checkpointing) is its own job under the checkpoint wrapper: the warning
signal, requeue and ``max_restarts`` of the executor's ``checkpoint`` settings, its
checkpoints in its folder. Such jobs differ in more than their command, so ``map`` of one
submits a job per call rather than an array.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path, PurePath
from typing import Any, Protocol

from hpcbridge.backends.base import Backend
from hpcbridge.errors import JobNotFound, SpecError
from hpcbridge.executor import checkpointing, payload, task_files
from hpcbridge.executor.poller import Poller, Task
from hpcbridge.jobs.sections import CheckpointSpec
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo
from hpcbridge.site import SiteConfig
from hpcbridge.transports.base import Transport

WORKER_MODULE = "hpcbridge.executor.run_task"
# A job name taken from the function's own, when it is one the schedulers accept.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_OWN_FIELDS = ("command", "script", "array")
_OWN_CHECKPOINT_FIELDS = ("command", "restart", "directory", "on_limit")
# The schedulers whose job can requeue itself from inside (hpcbridge_requeue in their
# templates: scontrol requeue, qrerun); the local backend's wrapper can only stop at the limit.
_REQUEUE_FROM_JOB = frozenset({"slurm", "pbs"})


class Jobs(Protocol):
    """What the executor needs of a Cluster (it sits below cluster.py, which hands itself in)."""

    site: SiteConfig
    transport: Transport
    backend: Backend

    def submit_many(self, specs: Sequence[JobSpec]) -> list[str]: ...

    def cancel(self, job_ids: Sequence[str]) -> None: ...


class TaskFuture(Future[Any]):
    """A Future whose ``cancel()`` cancels its job too, queued or running: it stays PENDING
    (never RUNNING) until its result is in, since a cluster job can be stopped at any time."""

    def __init__(self, job_id: str, cancel_jobs: Callable[[Sequence[str]], None]) -> None:
        super().__init__()
        self.job_id = job_id
        self._cancel_jobs = cancel_jobs

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        self._cancel_jobs([self.job_id])
        return super().cancel()


class ClusterExecutor(Executor):
    """Runs Python calls as jobs of one cluster (see ``Cluster.executor``)."""

    def __init__(
        self,
        cluster: Jobs,
        *,
        python: str | None = None,
        root: str | Path | None = None,
        **job_defaults: Any,
    ) -> None:
        payload.require_cloudpickle()
        clashing = sorted(set(job_defaults) & set(_OWN_FIELDS))
        if clashing:
            raise SpecError(
                f"{', '.join(clashing)}: the executor sets these itself; leave them out"
            )
        checkpoint = job_defaults.pop("checkpoint", None) or {}
        clashing = sorted(set(checkpoint) & set(_OWN_CHECKPOINT_FIELDS))
        if clashing:
            raise SpecError(
                f"checkpoint: {', '.join(clashing)}: the executor sets these itself for a "
                "checkpointable function; leave them out"
            )
        self.cluster = cluster
        self.python = python or sys.executable
        self._files, base = task_files.for_site(cluster.site.transport, cluster.transport, root)
        self.folder = base / uuid.uuid4().hex[:12]
        self._named = "name" in job_defaults
        given = {
            "name": "python-task",
            **job_defaults,
            "command": "true",
            "workdir": str(self.folder),
        }
        self._defaults = JobSpec.parse(given, source="executor job defaults")
        # The commands and folder are each call's own; these stand in while checking.
        placeholders = {"command": "true", "directory": str(self.folder)}
        self._checkpoint_given = {**given, "checkpoint": {**checkpoint, **placeholders}}
        self._checkpoint: CheckpointSpec | None = None
        if checkpoint:  # a mistake in them is better said now than at the first such call
            self._checkpoint_settings()
        self._numbers = itertools.count()
        # The poller thread and the caller's share the Cluster: one command of ours at a time.
        self._cluster_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._poller = Poller(self._status, self._files)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` as one job; unpicklable parts are refused here."""
        return self._submit(fn, [(args, kwargs)])[0]

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``fn`` over the zipped inputs as one job array; results in input order. As with
        concurrent.futures, an iterator left early (or an error) cancels the jobs not done."""
        del chunksize  # every call is its own array task
        end = None if timeout is None else time.monotonic() + timeout
        futures = self._submit(fn, [(args, {}) for args in zip(*iterables, strict=False)])

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    yield future.result(None if end is None else end - time.monotonic())
            finally:
                self._cancel_unfinished(futures)

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls from now; ``cancel_futures`` cancels every job not done (in one
        scheduler call), ``wait`` blocks until every future is settled."""
        with self._shutdown_lock:
            self._shut_down = True
        if cancel_futures:
            self._cancel_unfinished([task.future for task in self._poller.unfinished()])
        self._poller.stop(wait)

    def _submit(
        self, fn: Callable[..., Any], calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
    ) -> list[TaskFuture]:
        with self._shutdown_lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
        checkpointed = checkpointing.checkpointable(fn)
        if checkpointed and self.cluster.backend.name not in _REQUEUE_FROM_JOB:
            raise SpecError(
                f"{checkpointing.name_of(fn)} is checkpointable, but "
                f"a {self.cluster.backend.name} job cannot requeue itself at its time limit; "
                "run it on Slurm or PBS, or submit a function without a checkpoint method"
            )
        many = len(calls) > 1
        blobs = [
            payload.dump_call(fn, args, kwargs, item=f"item {index}: " if many else "")
            for index, (args, kwargs) in enumerate(calls)
        ]
        folders = [self.folder / str(next(self._numbers)) for _ in blobs]
        for folder, blob in zip(folders, blobs, strict=True):
            self._files.put_call(folder, blob)
        name = getattr(fn, "__name__", "")
        specs = [self._spec(folder, name, checkpointed) for folder in folders]
        with self._cluster_lock:
            job_ids = self.cluster.submit_many(specs)
        futures = [TaskFuture(job_id, self._cancel) for job_id in job_ids]
        self._poller.track(
            Task(job_id, folder, future)
            for job_id, folder, future in zip(job_ids, folders, futures, strict=True)
        )
        return futures

    def _spec(self, folder: PurePath, fn_name: str, checkpointed: bool) -> JobSpec:
        """The job of one call: the defaults, the worker's command, the function's name, and
        for a checkpointable function the wrapper around it."""
        update: dict[str, Any] = {"command": self._worker(folder)}
        if not self._named and _NAME.fullmatch(fn_name):
            update["name"] = fn_name
        if checkpointed:
            update["command"] = f"exec {update['command']}"
            update["checkpoint"] = self._checkpoint_of(folder)
        return self._defaults.model_copy(update=update)

    def _worker(self, folder: PurePath, call_file: str = "") -> str:
        """The worker's command line, its stderr to the folder."""
        quoted = shlex.quote(str(folder))
        return (
            f"{shlex.quote(self.python)} -m {WORKER_MODULE} {quoted}{call_file} "
            f"2>>{shlex.quote(str(folder / payload.STDERR_FILE))}"
        )

    def _checkpoint_of(self, folder: PurePath) -> CheckpointSpec:
        """The wrapper's commands for one checkpointable call: ask the worker for its call to
        continue from; restart the worker on the one in the checkpoint being resumed. The
        worker is started by ``exec``, as the wrapper sends the request to the process it runs
        as the work, which must then be the worker itself."""
        settings = self._checkpoint_settings()
        ask = (
            f"{shlex.quote(self.python)} -m {checkpointing.__name__} {shlex.quote(str(folder))} "
            f"{checkpointing.answer_time(settings.signal.seconds)}"
        )
        resume = f' "$HPCBRIDGE_CHECKPOINT"/{payload.CALL_FILE}'
        return settings.model_copy(
            update={
                "command": ask,
                "restart": f"exec {self._worker(folder, resume)}",
                "directory": str(folder / checkpointing.CHECKPOINTS),
            }
        )

    def _checkpoint_settings(self) -> CheckpointSpec:
        """The executor's ``checkpoint`` settings, checked with the job defaults once."""
        if self._checkpoint is None:
            checked = JobSpec.parse(
                self._checkpoint_given,
                source="executor job defaults, for a checkpointable function",
            )
            assert checked.checkpoint is not None  # given just above
            self._checkpoint = checked.checkpoint
        return self._checkpoint

    def _status(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        with self._cluster_lock:
            return self.cluster.backend.status(list(job_ids))

    def _cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs; one that has just ended (unknown to the scheduler now) is no error."""
        with self._cluster_lock, contextlib.suppress(JobNotFound):
            self.cluster.cancel(job_ids)

    def _cancel_unfinished(self, futures: Sequence[Future[Any]]) -> None:
        """Cancel the jobs of the futures not done, in one scheduler call, then the futures."""
        open_ = [f for f in futures if isinstance(f, TaskFuture) and not f.done()]
        if open_:
            self._cancel([future.job_id for future in open_])
            for future in open_:
                Future.cancel(future)
