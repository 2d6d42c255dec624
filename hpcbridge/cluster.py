"""The facade users hold: one object per cluster, the same verbs on every scheduler."""

from __future__ import annotations

import logging
import os
import posixpath
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hpcbridge.errors import (
    HpcBridgeError,
    JobNotFound,
    SchedulerError,
    SpecError,
    SubmitError,
    WaitTimeout,
)
from hpcbridge.jobs.lifecycle import JobState

# Imported where first used, so that ``from hpcbridge import Cluster`` loads neither pydantic
# nor Jinja nor a backend (issue 16 item 5); tests/test_packaging.py checks it.
if TYPE_CHECKING:
    from hpcbridge.backends.base import Backend
    from hpcbridge.backends.snapshot import SharedPoll
    from hpcbridge.executor.allocation import AllocationExecutor
    from hpcbridge.executor.pool import ClusterExecutor
    from hpcbridge.jobs import sweep
    from hpcbridge.jobs.sections import Dependency
    from hpcbridge.jobs.spec import JobSpec
    from hpcbridge.jobs.state import JobInfo
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports.base import Transport

# wait() polls quickly at first, when short jobs finish, then backs off while nothing changes.
log = logging.getLogger(__name__)
_FIRST_POLL_S = 0.25
_MAX_POLL_S = 10.0
# A job just submitted may take a moment to show up; this many empty polls are forgiven.
_MISSING_POLLS_FORGIVEN = 5
# A job that completed or failed has an exit code; shown ended without one (Slurm: squeue
# before slurmdbd has the end), it is polled this long for it.
_EXIT_CODE_GRACE_S = 5.0
_RAN_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})
# Turns shared polling on for Clusters that do not say (the CLI's).
_SHARED_POLL_ENV = "HPCBRIDGE_SHARED_POLL"


@runtime_checkable
class ArrayBackend(Protocol):
    """What submit_many needs of a backend beyond Backend to pack jobs into arrays; one
    without it gets one submission per job."""

    def max_array_size(self) -> int | None:
        """How many tasks one array may have (None: no limit)."""
        ...

    def array_task_id(self, array_id: str, index: int) -> str:
        """The id of task ``index`` of array ``array_id``."""
        ...


class Cluster:
    """Submit, watch and steer jobs on one site."""

    def __init__(
        self,
        site: SiteConfig,
        *,
        transport: Transport | None = None,
        backend: Backend | None = None,
        shared_poll: bool | None = None,
    ) -> None:
        """``shared_poll``: wait() (and status() given a max_age) read one status snapshot
        that every process of this user on this machine shares, per site, instead of each
        asking the scheduler (backends/snapshot.py); None takes HPCBRIDGE_SHARED_POLL=1
        from the environment, for the CLI."""
        from hpcbridge.jobs.rendering import Renderer

        self.site = site
        if transport is None:
            from hpcbridge.transports.factory import make_transport

            transport = make_transport(site)
        self.transport = transport
        if backend is None:
            from hpcbridge.backends.factory import make_backend

            backend = make_backend(site, transport)
        self.backend = backend
        self.renderer = Renderer(site.template_dir)
        self.shared_poll = _env_flag(_SHARED_POLL_ENV) if shared_poll is None else shared_poll
        self._ids_by_name: dict[str, str] = {}
        self._specs: dict[str, JobSpec] = {}  # what each job was submitted as, for retries
        # Each job waited on with retry=True -> the ids of its runs, first to latest.
        self.attempts: dict[str, list[str]] = {}
        # Each job of a submit_many -> the submission it went in: its array's id, or its own.
        self.submitted_in: dict[str, str] = {}
        self._max_array_size: tuple[int | None] | None = None  # asked once, when first needed
        self._shared: SharedPoll | None = None  # made on first use

    @classmethod
    def from_site(
        cls,
        name_or_path: str | Path,
        *,
        transport: Transport | None = None,
        shared_poll: bool | None = None,
    ) -> Cluster:
        """A cluster described by a site config name (see ``site_configs/``) or YAML path."""
        from hpcbridge.site import SiteConfig

        return cls(SiteConfig.load(name_or_path), transport=transport, shared_poll=shared_poll)

    @classmethod
    def local(cls, state_dir: str | Path | None = None) -> Cluster:
        """The embedded default: jobs run as processes on this machine."""
        from hpcbridge.site import SiteConfig

        site = SiteConfig.load("local")
        if state_dir is not None:
            site = site.model_copy(update={"state_dir": Path(state_dir)})
        return cls(site)

    def render(self, spec: JobSpec | Mapping[str, Any]) -> str:
        """The job script that submit() would hand to the scheduler (without its token)."""
        return self._render(self._prepare(spec), token=None)

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> str:
        """Submit one job and return its id; dependencies may name jobs submitted earlier."""
        prepared = self._prepare(spec)
        token = f"hpcbridge:{uuid.uuid4().hex}"
        script = self._render(prepared, token=token)
        job_id = self.backend.submit(script, prepared, token)
        self._ids_by_name[prepared.name] = job_id
        if prepared.retry is not None:
            self._specs[job_id] = prepared
        return job_id

    def submit_many(
        self,
        specs: Iterable[JobSpec | Mapping[str, Any]],
        *,
        limit: int | None = None,
        max_array_size: int | None = None,
    ) -> list[str]:
        """Submit many jobs, packed into job arrays, and return one id per job, in order.

        Jobs that differ only in command and environment share an array, split into arrays no
        larger than the scheduler allows (Slurm's MaxArraySize, PBS's max_array_size) or than
        ``max_array_size``; each job gets its task's id ("12_3", "12[3].server"), whose
        status and exit code are its own. ``limit`` caps how many tasks of each array run at
        once. All specs are checked and every parameters file written before the first
        submission; if a later submission fails, the error names the jobs already submitted.
        """
        from hpcbridge.jobs import sweep

        if limit is not None and limit < 1:
            raise SpecError(f"limit: {limit} tasks at once would run nothing; give 1 or more")
        if max_array_size is not None and max_array_size < 1:
            raise SpecError(f"max_array_size: {max_array_size} must be 1 or more")
        prepared = [self._prepare(spec) for spec in specs]
        if not prepared:
            return []
        chunks = sweep.plan(prepared, max_array_size=self._array_size(max_array_size), limit=limit)
        staged = [self._stage(chunk) for chunk in chunks]
        submitted: list[tuple[sweep.Chunk, str]] = []
        for chunk, (script, token) in zip(chunks, staged, strict=True):
            try:
                submitted.append((chunk, self.backend.submit(script, chunk.spec, token)))
            except HpcBridgeError as exc:
                if not submitted:
                    raise
                raise _partly_submitted(exc, submitted, len(prepared)) from exc
        self._remember_names(submitted)
        handles = {}
        for chunk, job_id in submitted:
            for position, task_id in self._task_ids(chunk, job_id):
                handles[position] = task_id
                self.submitted_in[task_id] = job_id
        return [handles[position] for position in range(len(prepared))]

    def status(
        self, job_ids: str | Iterable[str], *, max_age: float | None = None
    ) -> dict[str, JobInfo]:
        """State of every job named, from one scheduler query; unknown ids raise JobNotFound.

        With shared polling on, a ``max_age`` (a polling loop's interval) lets the answer
        come from the shared snapshot if it is younger than that; the jobs it cannot speak
        for yet are asked of the scheduler as without it.
        """
        wanted = _id_list(job_ids)
        found: dict[str, JobInfo] = {}
        if max_age is not None and (shared := self._shared_poll(None)):
            found = shared.status(wanted, max_age=max_age)
        unanswered = [job_id for job_id in wanted if job_id not in found]
        if unanswered:
            found.update(self.backend.status(unanswered))
        missing = [job_id for job_id in wanted if job_id not in found]
        if missing:
            hint = f"; {self.backend.missing_job_hint}" if self.backend.missing_job_hint else ""
            raise JobNotFound(f"no job with id {', '.join(missing)} on site {self.site.name}{hint}")
        return found

    def wait(
        self,
        job_ids: str | Iterable[str],
        *,
        timeout: float | None = None,
        poll_interval: float = _FIRST_POLL_S,
        shared_poll: bool | None = None,
        retry: bool = False,
    ) -> dict[str, JobInfo]:
        """Block until every job has ended; polls all unfinished jobs in one call each time.

        With ``retry``, a job submitted here whose spec has ``retry`` and that ends in one of
        its states is submitted again after its backoff (hpcbridge.jobs.retry), while the
        others are still watched; the answer is each job's last run, under the id waited
        on, and ``attempts`` lists every run.

        With shared polling (``shared_poll``, default the Cluster's), each poll reads the
        snapshot every process of this user shares, refreshed by whichever process finds it
        older than its interval, and sleeps until it will be: a change is still seen within
        one interval, and the scheduler is asked once per interval however many wait.
        """
        wanted = _id_list(job_ids)
        if retry:
            return self._wait_retrying(wanted, timeout=timeout, poll_interval=poll_interval)
        shared = self._shared_poll(shared_poll)
        deadline = None if timeout is None else time.monotonic() + timeout
        finished: dict[str, JobInfo] = {}
        exit_awaited: dict[str, float] = {}
        missing_polls = 0
        interval = poll_interval
        while True:
            pending = [job_id for job_id in wanted if job_id not in finished]
            found = (
                shared.status(pending, max_age=interval) if shared else self.backend.status(pending)
            )
            newly_done = {
                job_id: found[job_id]
                for job_id in pending
                if job_id in found and _settled(found[job_id], exit_awaited, time.monotonic())
            }
            finished.update(newly_done)
            missing_polls = missing_polls + 1 if any(j not in found for j in pending) else 0
            if missing_polls > _MISSING_POLLS_FORGIVEN:
                lost = ", ".join(j for j in pending if j not in found)
                hint = f"; {self.backend.missing_job_hint}" if self.backend.missing_job_hint else ""
                raise JobNotFound(f"job {lost} vanished from site {self.site.name}{hint}")
            if len(finished) == len(wanted):
                return {job_id: finished[job_id] for job_id in wanted}
            if deadline is not None and time.monotonic() >= deadline:
                unfinished = ", ".join(j for j in wanted if j not in finished)
                raise WaitTimeout(f"jobs {unfinished} still running after {timeout:g} s")
            settling = bool(exit_awaited.keys() - finished.keys())
            interval = poll_interval if newly_done or settling else min(interval * 1.5, _MAX_POLL_S)
            sleep_for = shared.next_poll(interval) if shared else interval
            if deadline is not None:
                sleep_for = min(sleep_for, deadline - time.monotonic())
            time.sleep(max(0.0, sleep_for))

    def _wait_retrying(
        self, wanted: list[str], *, timeout: float | None, poll_interval: float
    ) -> dict[str, JobInfo]:
        """wait(retry=True): one status call per poll for every latest run; a run that ended
        retryably is resubmitted once its backoff has passed, the others go on being
        watched meanwhile."""
        from hpcbridge.jobs.retry import retry_after

        deadline = None if timeout is None else time.monotonic() + timeout
        for job_id in wanted:
            self.attempts.setdefault(job_id, [job_id])
        due: dict[str, tuple[float, JobSpec]] = {}  # job waited on -> (when, next spec)
        over: dict[str, JobInfo] = {}
        exit_awaited: dict[str, float] = {}
        interval = poll_interval
        while True:
            now = time.monotonic()
            for job_id, (when, spec) in list(due.items()):
                if when <= now:
                    self.attempts[job_id].append(self.submit(spec))
                    del due[job_id]
            watched = {self.attempts[j][-1]: j for j in wanted if j not in over and j not in due}
            infos = self.status(list(watched)) if watched else {}
            settling = False  # ended, its exit code not yet in accounting: poll again soon
            for run, info in infos.items():
                if not _settled(info, exit_awaited, time.monotonic()):
                    settling = settling or info.state.is_terminal
                    continue
                job_id = watched[run]
                submitted = self._specs.get(run)
                runs = len(self.attempts[job_id])
                plan = retry_after(submitted, info.state, runs) if submitted else None
                if plan is None:
                    over[job_id] = info
                else:
                    log.info("job %s (run %s): retrying, %s", job_id, run, plan.reason)
                    next_spec = plan.spec.model_copy(update={"depends_on": []})
                    due[job_id] = (time.monotonic() + plan.delay_s, next_spec)
            if len(over) == len(wanted):
                return {job_id: over[job_id] for job_id in wanted}
            if deadline is not None and time.monotonic() >= deadline:
                unfinished = ", ".join(j for j in wanted if j not in over)
                raise WaitTimeout(f"jobs {unfinished} still running after {timeout:g} s")
            interval = poll_interval if settling else min(interval * 1.5, _MAX_POLL_S)
            wake = [when for when, _ in due.values()]
            sleep_for = min([interval, *(when - time.monotonic() for when in wake)])
            if deadline is not None:
                sleep_for = min(sleep_for, deadline - time.monotonic())
            time.sleep(max(0.0, sleep_for))

    def cancel(self, job_ids: str | Iterable[str]) -> None:
        """Cancel pending or running jobs."""
        self.backend.cancel(_id_list(job_ids))

    def hold(self, job_ids: str | Iterable[str]) -> None:
        """Keep pending jobs from starting until released."""
        self.backend.hold(_id_list(job_ids))

    def release(self, job_ids: str | Iterable[str]) -> None:
        """Let held jobs start."""
        self.backend.release(_id_list(job_ids))

    def requeue(self, job_ids: str | Iterable[str]) -> None:
        """Stop jobs and put them back in the queue to run again."""
        self.backend.requeue(_id_list(job_ids))

    def set_priority(self, job_ids: str | Iterable[str], level: str) -> None:
        """Move queued jobs to one of the site's priority levels (its QOS and/or nice)."""
        chosen = self.site.priorities.level(level, self.site.name)
        self.backend.set_priority(_id_list(job_ids), qos=chosen.qos, nice=chosen.nice)

    def check(self) -> str:
        """Reach the scheduler; returns what it said."""
        return self.backend.describe()

    def executor(
        self, *, python: str | None = None, root: str | Path | None = None, **job_defaults: Any
    ) -> ClusterExecutor:
        """A concurrent.futures.Executor running Python calls as jobs of this cluster.

        ``job_defaults`` are JobSpec fields for every call's job (resources, partition, ...);
        the worker runs under ``python`` (default: this interpreter's path, which the nodes
        must have too); call folders go under ``root`` (default ``./.hpcbridge-tasks``), which
        the compute nodes must share; on an SSH site with ``shared_filesystem: false``, a folder
        on the cluster (default: the site's ``remote_root``), reached over SFTP. Needs
        cloudpickle: ``pip install 'hpcbridge[executor]'``.
        """
        from hpcbridge.executor.pool import ClusterExecutor  # cloudpickle loads only with it

        return ClusterExecutor(self, python=python, root=root, **job_defaults)

    def allocation(
        self,
        *,
        python: str | None = None,
        root: str | Path | None = None,
        max_workers: int | None = None,
        gpus_per_call: int = 0,
    ) -> AllocationExecutor:
        """An executor whose calls run inside the job this process runs in, the rest waiting
        here; no queue wait per call. In a Slurm allocation (``salloc``, a batch job) they are
        ``srun --exact`` steps, as many at once as it has tasks (or ``max_workers``); with
        ``gpus_per_call``, each step gets that many of the allocation's GPUs (and sees only
        those), and no more calls run at once than its GPUs allow; more than it has is
        refused (SpecError). In a PBS job on one host they are processes of the job, as many
        at once as its NCPUS. Files and errors as for ``executor``."""
        from hpcbridge.executor.allocation import in_allocation

        return in_allocation(
            self.site.scheduler,
            python=python,
            root=root,
            max_workers=max_workers,
            gpus_per_call=gpus_per_call,
        )

    def close(self) -> None:
        """Release the transport's (and a REST driver's) connections."""
        self.backend.close()
        self.transport.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _shared_poll(self, wanted: bool | None) -> SharedPoll | None:
        """The shared snapshot, if asked for (``wanted``, else the Cluster's setting) and the
        backend lists jobs: the local backend reads its own files, no scheduler to spare."""
        if not (self.shared_poll if wanted is None else wanted):
            return None
        from hpcbridge.backends.snapshot import ListingBackend, SharedPoll

        if not isinstance(self.backend, ListingBackend):
            return None
        if self._shared is None:
            self._shared = SharedPoll(self.backend, self.site.name)
        return self._shared

    def _render(self, spec: JobSpec, *, token: str | None, **extra: Any) -> str:
        context = self.backend.template_context(spec)
        return self.renderer.render(self.backend.template, spec, token=token, **context, **extra)

    def _array_size(self, wanted: int | None) -> int | None:
        """The largest array to submit: the scheduler's limit (asked once per Cluster), or
        ``wanted`` if smaller; 1 (no arrays) for a backend that cannot pack jobs."""
        if not isinstance(self.backend, ArrayBackend):
            return 1
        if self._max_array_size is None:
            self._max_array_size = (self.backend.max_array_size(),)
        limits = [size for size in (self._max_array_size[0], wanted) if size is not None]
        return min(limits) if limits else None

    def _stage(self, chunk: sweep.Chunk) -> tuple[str, str]:
        """A chunk's script and token; an array's parameters file is written here, beside
        where its tasks start (the job's workdir), through the transport."""
        from hpcbridge.jobs import sweep

        token = f"hpcbridge:{uuid.uuid4().hex}"
        if not chunk.is_array:
            return self._render(chunk.spec, token=token), token
        name = f".hpcbridge-sweep-{token.partition(':')[2]}.sh"  # a job name may hold a "/"
        where = posixpath.join(chunk.spec.workdir, name) if chunk.spec.workdir else name
        script = self._render(chunk.spec, token=token, sweep_file=f"./{name}")
        _write_parameters(
            self.transport, where, sweep.render_parameters(self.renderer, chunk.tasks)
        )
        return script, token

    def _task_ids(self, chunk: sweep.Chunk, job_id: str) -> list[tuple[int, str]]:
        """Each job of a chunk with its own id: the chunk's, or its array task's."""
        if not chunk.is_array:
            return [(chunk.positions[0], job_id)]
        assert isinstance(self.backend, ArrayBackend)  # plan() packs only for such backends
        return [
            (position, self.backend.array_task_id(job_id, index))
            for index, position in enumerate(chunk.positions)
        ]

    def _remember_names(self, submitted: Sequence[tuple[sweep.Chunk, str]]) -> None:
        """A later depends_on may name a job of this call that was one submission (a plain
        job, or one whole array); a name spread over several is forgotten, not half-meant."""
        submissions: dict[str, set[str]] = {}
        for chunk, job_id in submitted:
            submissions.setdefault(chunk.spec.name, set()).add(job_id)
        for name, ids in submissions.items():
            if len(ids) == 1:
                self._ids_by_name[name] = ids.pop()
            else:
                self._ids_by_name.pop(name, None)

    def _prepare(self, spec: JobSpec | Mapping[str, Any]) -> JobSpec:
        from hpcbridge.jobs.spec import JobSpec

        job = spec if isinstance(spec, JobSpec) else JobSpec.parse(spec)
        if job.checkpoint is not None and job.checkpoint.total_runtime is not None:
            raise SpecError(
                f"job {job.name}: checkpoint.total_runtime makes it a chain of segments; submit "
                "it with `hpcbridge workflow submit FILE` or hpcbridge.submit_segments"
            )
        if job.preview is not None:
            raise SpecError(
                f"job {job.name}: preview makes it two arrays, the coarse one first; submit "
                "it with `hpcbridge workflow submit FILE` (hpcbridge.workflows.preview)"
            )
        if job.begin_cheapest:
            raise SpecError(
                f"job {job.name}: begin: cheapest needs the run-time estimate and the site's "
                "tariff; submit it with `hpcbridge submit FILE` or hpcbridge.policy.energy."
                "plan_energy, which sets begin"
            )
        job = self.site.prepare(job)
        if not job.depends_on:
            return job
        return job.model_copy(update={"depends_on": [self._resolve(d) for d in job.depends_on]})

    def _resolve(self, dependency: Dependency) -> Dependency:
        """A name of a job this Cluster submitted becomes its id; ids pass through.

        Ids start with a digit on every scheduler ("123", "123_4", "123.server").
        """
        job = dependency.job
        if job is None:
            return dependency
        if job in self._ids_by_name:
            return dependency.model_copy(update={"job": self._ids_by_name[job]})
        if not job[0].isdigit():
            raise SpecError(
                f"depends_on: {job!r} is neither a job id nor the name of a job submitted "
                "through this Cluster"
            )
        return dependency


def _write_parameters(transport: Transport, path: str, text: str) -> None:
    """Write a parameters file where the transport runs commands (here, or over SSH); the
    path is an argument of the fixed shell line, never part of it. A transport that cannot
    reach its host raises on its own; a refused write is the workdir's problem (missing, not
    writable), said before anything is submitted."""
    result = transport.run(["sh", "-c", 'cat > "$1"', "hpcbridge-write", path], stdin=text)
    if not result.ok:
        raise SpecError(
            f"workdir: cannot write the sweep's parameters file {path}: {result.stderr.strip()}"
        )


def _partly_submitted(
    error: HpcBridgeError, submitted: Sequence[tuple[sweep.Chunk, str]], total: int
) -> SubmitError:
    """The error of a submit_many that failed after some submissions: which jobs (by their
    position in the list, from 0) went in as which job or array, to be kept or cancelled.
    Never transient: submitting the whole list again would submit those jobs twice."""
    count = sum(len(chunk.positions) for chunk, _ in submitted)
    done = "; ".join(f"{job_id}: jobs {_ranges(chunk.positions)}" for chunk, job_id in submitted)
    scheduler = error if isinstance(error, SchedulerError) else None
    return SubmitError(
        f"submit_many stopped after {count} of {total} jobs ({error}); already submitted: {done}",
        argv=scheduler.argv if scheduler else (),
        returncode=scheduler.returncode if scheduler else None,
    )


def _ranges(positions: Sequence[int]) -> str:
    """0,1,2,3,7 -> "0-3,7"."""
    runs: list[list[int]] = []
    for position in positions:
        if runs and position == runs[-1][1] + 1:
            runs[-1][1] = position
        else:
            runs.append([position, position])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _env_flag(name: str) -> bool:
    """An environment switch: 1, true, yes or on (any case) turn it on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _id_list(job_ids: str | Iterable[str]) -> list[str]:
    return [job_ids] if isinstance(job_ids, str) else list(job_ids)


def _settled(info: JobInfo, exit_awaited: dict[str, float], now: float) -> bool:
    """Whether ``info`` is how the job ended. A job that ran ends with an exit code, but Slurm
    shows it ended in squeue a moment before slurmdbd holds the code sacct reports: such a job
    is polled again for up to _EXIT_CODE_GRACE_S (then taken as it is, for sites without
    accounting)."""
    if not info.state.is_terminal:
        return False
    if info.exit_code is not None or info.state not in _RAN_STATES:
        return True
    first_seen = exit_awaited.setdefault(info.job_id, now)
    return now - first_seen >= _EXIT_CODE_GRACE_S
