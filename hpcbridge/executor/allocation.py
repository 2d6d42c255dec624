"""``Cluster.allocation()``: calls run inside the job this process is in, as many at once as
it has room for, the rest waiting here.

- Slurm (an ``salloc``, or a batch job): each call is one ``srun --exact`` step, as many at
  once as the allocation has tasks (and, with ``gpus_per_call``, as its GPUs allow).
- PBS (a batch job, or ``qsub -I``) on one host: each call is a process of the job on that
  host, as many at once as its ``NCPUS``. A job over several hosts is refused: reaching the
  others takes ``pbsdsh`` (the TM interface), whose behaviour on OpenPBS is not captured in
  the project's reference outputs, so it is not built.

No job is queued per call: each is started by a thread of a
concurrent.futures.ThreadPoolExecutor and waited for through the local transport, its call
and result in a folder as for ``Cluster.executor`` (the same worker, the same errors).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hpcbridge.backends.commands import SchedulerCommands
from hpcbridge.backends.slurm import cli, parse
from hpcbridge.backends.slurm.backend import ERRORS
from hpcbridge.errors import ConfigError, SpecError
from hpcbridge.executor import outcome, payload
from hpcbridge.executor.pool import WORKER_MODULE
from hpcbridge.files import write_atomically
from hpcbridge.jobs.state import JobInfo, JobState
from hpcbridge.transports.local import LocalTransport

# A step lasts as long as its call, at most as long as the allocation: no command timeout.
_STEP_LIMIT_S = 7 * 24 * 3600.0
_QUERY_LIMIT_S = 60.0


def in_allocation(
    scheduler: str,
    *,
    python: str | None,
    root: str | Path | None,
    max_workers: int | None,
    gpus_per_call: int = 0,
) -> AllocationExecutor:
    """The executor for the Slurm or PBS job this process runs in, with as many workers as
    it has room for (module docstring) unless ``max_workers`` says; refused elsewhere."""
    if scheduler == "pbs":
        return _in_pbs_job(python=python, root=root, max_workers=max_workers, gpus=gpus_per_call)
    if scheduler != "slurm":
        raise ConfigError(
            f"Cluster.allocation runs inside a Slurm or PBS job; a {scheduler} site has none "
            "(submit through Cluster.executor)"
        )
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        raise ConfigError(
            "Cluster.allocation runs inside a Slurm allocation (salloc, or a batch job): "
            "SLURM_JOB_ID is not set here"
        )
    tasks = int(os.environ.get("SLURM_NTASKS") or os.environ.get("SLURM_CPUS_ON_NODE") or 1)
    workers = max_workers or tasks
    if gpus_per_call:
        workers = min(workers, allocation_gpus(job_id, gpus_per_call) // gpus_per_call)
    return AllocationExecutor(
        job_id, workers, python=python, root=root, gpus_per_call=gpus_per_call, steps=True
    )


def _in_pbs_job(
    *, python: str | None, root: str | Path | None, max_workers: int | None, gpus: int
) -> AllocationExecutor:
    """The executor for the PBS job this process runs in: its calls are processes on this
    host, ``NCPUS`` at once (the CPUs the job holds here, which PBS's MoM sets)."""
    job_id = os.environ.get("PBS_JOBID")
    if not job_id:
        raise ConfigError(
            "Cluster.allocation runs inside a PBS job (a batch job, or qsub -I): "
            "PBS_JOBID is not set here"
        )
    if gpus:
        raise SpecError(
            f"gpus_per_call={gpus}: GPUs are packed onto calls on Slurm only; on PBS run the "
            "calls without it (each then sees every GPU of the job)"
        )
    node_file = os.environ.get("PBS_NODEFILE")
    hosts = sorted(set(Path(node_file).read_text().split())) if node_file else []
    if len(hosts) > 1:
        raise ConfigError(
            f"PBS job {job_id} spans {len(hosts)} hosts ({', '.join(hosts)}): Cluster.allocation "
            "runs calls on the host of the job's script only, so ask for one (select=1); "
            "calls on other hosts by pbsdsh are not built"
        )
    cpus = int(os.environ.get("NCPUS") or 1)
    return AllocationExecutor(job_id, max_workers or cpus, python=python, root=root, steps=False)


def allocation_gpus(job_id: str, wanted: int) -> int:
    """How many GPUs allocation ``job_id`` holds on all its nodes, refusing calls of
    ``wanted`` GPUs that could never fit.

    Asked of the controller (``scontrol show job``: its allocated TRES), because Slurm 22.05
    sets no GPU variable in an salloc shell given --gres (SLURM_JOB_GPUS and
    SLURM_GPUS_ON_NODE exist only in batch scripts, SLURM_GPUS only for --gpus).
    """
    if wanted < 0:
        raise SpecError(f"gpus_per_call must be 0 or more, not {wanted}")
    commands = SchedulerCommands(LocalTransport(_QUERY_LIMIT_S), ERRORS)
    tres = parse.parse_job_tres(commands.run(cli.scontrol_show_job(job_id)).stdout)
    gpus = parse.tres_gpus(tres) or 0
    if wanted > gpus:
        raise SpecError(
            f"gpus_per_call={wanted} is more than allocation {job_id} has: {gpus} GPUs "
            f"(TRES={tres})"
        )
    return gpus


class AllocationExecutor(ThreadPoolExecutor):
    """Runs Python calls inside one allocation, ``max_workers`` at a time: as Slurm steps
    (``steps``), each asking for ``gpus_per_call`` of its GPUs, or as plain processes."""

    def __init__(
        self,
        job_id: str,
        max_workers: int,
        *,
        python: str | None = None,
        root: str | Path | None = None,
        gpus_per_call: int = 0,
        steps: bool = True,
    ) -> None:
        payload.require_cloudpickle()
        super().__init__(max_workers=max_workers, thread_name_prefix="hpcbridge-step")
        self.job_id = job_id
        self.python = python or sys.executable
        self.gpus_per_call = gpus_per_call
        self.steps = steps
        base = Path(root) if root is not None else Path.cwd() / ".hpcbridge-tasks"
        self.folder = base.resolve() / uuid.uuid4().hex[:12]
        self._transport = LocalTransport(_STEP_LIMIT_S)  # the allocation is where we run
        self._numbers = itertools.count()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` as a step; unpicklable parts are refused here."""
        blob = payload.dump_call(fn, args, kwargs)
        folder = self.folder / str(next(self._numbers))
        folder.mkdir(parents=True)
        write_atomically(folder / payload.CALL_FILE, blob)
        return super().submit(self._step, folder)

    def _step(self, folder: Path) -> Any:
        """Run one call (a step, or a process) and return its value (or raise what it
        raised)."""
        command = [self.python, "-m", WORKER_MODULE, str(folder)]
        result = self._transport.run(self._argv(command, folder), timeout=_STEP_LIMIT_S)
        if not self.steps:  # srun writes the step's own; a plain process's is captured
            (folder / "stdout").write_text(result.stdout)
            (folder / payload.STDERR_FILE).write_text(result.stderr)
        if outcome.result_exists(folder):
            value = outcome.returned(self.job_id, folder)
            shutil.rmtree(folder, ignore_errors=True)  # as the executor's: kept when it failed
            return value
        # Its end is srun's (or the worker's) exit status: a failure to the worker, whatever
        # stopped it.
        info = JobInfo(job_id=self.job_id, state=JobState.FAILED, exit_code=result.returncode)
        raise outcome.no_result(f"{self.job_id} ({'step' if self.steps else 'task'})", folder, info)

    def _argv(self, command: Sequence[str], folder: Path) -> list[str]:
        if not self.steps:
            return list(command)
        return cli.srun_step(
            self.job_id,
            command,
            stdout=str(folder / "stdout"),
            stderr=str(folder / payload.STDERR_FILE),
            gpus=self.gpus_per_call,
        )
