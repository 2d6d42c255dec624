"""``Cluster.executor()``: a concurrent.futures.Executor whose calls are jobs.

Each call gets a folder under the executor's own (on a filesystem the compute nodes share):
its pickled call goes in before submission, the worker writes the result and its stderr
beside it. ``map`` submits all its calls in one ``Cluster.submit_many`` (one job array); the
futures are settled by the executor's one poller thread.
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
from pathlib import Path
from typing import Any, Protocol

from hpcbridge.backends.base import Backend
from hpcbridge.errors import JobNotFound, SpecError
from hpcbridge.executor import payload
from hpcbridge.executor.poller import Poller, Task
from hpcbridge.files import write_atomically
from hpcbridge.jobs.spec import JobSpec
from hpcbridge.jobs.state import JobInfo

WORKER_MODULE = "hpcbridge.executor.run_task"
# A job name taken from the function's own, when it is one the schedulers accept.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_OWN_FIELDS = ("command", "script", "array")


class Jobs(Protocol):
    """What the executor needs of a Cluster (it sits below cluster.py, which hands itself in)."""

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
        self.cluster = cluster
        self.python = python or sys.executable
        base = Path(root) if root is not None else Path.cwd() / ".hpcbridge-tasks"
        self.folder = base.resolve() / uuid.uuid4().hex[:12]
        self._named = "name" in job_defaults
        self._defaults = JobSpec.parse(
            {"name": "python-task", **job_defaults, "command": "true", "workdir": str(self.folder)},
            source="executor job defaults",
        )
        self._numbers = itertools.count()
        # The poller thread and the caller's share the Cluster: one command of ours at a time.
        self._cluster_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._poller = Poller(self._status)

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
        many = len(calls) > 1
        blobs = [
            payload.dump_call(fn, args, kwargs, item=f"item {index}: " if many else "")
            for index, (args, kwargs) in enumerate(calls)
        ]
        folders = [self.folder / str(next(self._numbers)) for _ in blobs]
        for folder, blob in zip(folders, blobs, strict=True):
            folder.mkdir(parents=True)
            write_atomically(folder / payload.CALL_FILE, blob)
        name = getattr(fn, "__name__", "")
        specs = [self._spec(folder, name) for folder in folders]
        with self._cluster_lock:
            job_ids = self.cluster.submit_many(specs)
        futures = [TaskFuture(job_id, self._cancel) for job_id in job_ids]
        self._poller.track(
            Task(job_id, folder, future)
            for job_id, folder, future in zip(job_ids, folders, futures, strict=True)
        )
        return futures

    def _spec(self, folder: Path, fn_name: str) -> JobSpec:
        """The job of one call: the defaults, the worker's command, the function's name."""
        quoted = shlex.quote(str(folder))
        command = (
            f"{shlex.quote(self.python)} -m {WORKER_MODULE} {quoted} "
            f"2>>{shlex.quote(str(folder / payload.STDERR_FILE))}"
        )
        update: dict[str, Any] = {"command": command}
        if not self._named and _NAME.fullmatch(fn_name):
            update["name"] = fn_name
        return self._defaults.model_copy(update=update)

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
