"""What became of a task, as the client raises it: the value, the function's own exception
with its remote traceback attached, or a TaskError saying why there is no result."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from hpcbridge.errors import JobKilled, RemoteError, RestartsExhausted, TaskError, WorkerError
from hpcbridge.executor import checkpointing, payload
from hpcbridge.executor.task_files import LOCAL, TaskFiles
from hpcbridge.jobs.state import JobInfo, JobState

# How much of the job's stderr an error carries: the end is where the cause is.
STDERR_LINES = 20
_STDERR_BYTES = 8192
# ``python -m`` of a missing package, or a module missing under it, on the worker.
_NO_MODULE = re.compile(r"No module named '?([\w.]+)'?")


def result_exists(folder: PurePath, files: TaskFiles = LOCAL) -> bool:
    """The worker wrote its result (atomically: it is whole once it is there)."""
    return files.has_result(folder)


def returned(job_id: str, folder: PurePath, files: TaskFiles = LOCAL) -> Any:
    """The function's value; raises what it raised, or the worker's complaint."""
    try:
        data = files.read(folder / payload.RESULT_FILE)
        if data is None:
            raise FileNotFoundError(f"no {payload.RESULT_FILE}")
        outcome = payload.load_outcome(data)
    except Exception as exc:  # a class of the remote exception not importable here, say
        raise RemoteError(
            f"job {job_id}: its result cannot be read here ({exc}); it is in {folder}",
            job_id=job_id,
            folder=str(folder),
            remote_type=type(exc).__name__,
        ) from exc
    if outcome["kind"] == "returned":
        return outcome["value"]
    if outcome["kind"] == "worker":
        raise WorkerError(f"job {job_id}: {outcome['message']}", job_id=job_id, folder=str(folder))
    exception = outcome["exception"]
    if not isinstance(exception, BaseException):
        raise RemoteError(
            f"job {job_id} raised {outcome['type']}, which could not be sent back\n"
            f"{outcome['traceback']}",
            job_id=job_id,
            folder=str(folder),
            remote_type=outcome["type"],
        )
    exception.add_note(outcome["traceback"].rstrip())
    raise exception


def no_result(job_id: str, folder: PurePath, info: JobInfo, files: TaskFiles = LOCAL) -> TaskError:
    """The error for a job that ended without a result: the scheduler killed it, or the
    worker never got as far as running the call (no Python there, no hpcbridge in it)."""
    exhausted = _restarts_exhausted(job_id, folder, files)
    if exhausted is not None:
        return exhausted
    tail = stderr_tail(folder, files=files)
    shown = f"; the end of its stderr ({folder / payload.STDERR_FILE}):\n{tail}" if tail else ""
    if info.state not in (JobState.COMPLETED, JobState.FAILED):
        reason = f" ({info.reason})" if info.reason else ""
        return JobKilled(
            f"job {job_id} was ended by the scheduler: {info.state.value}{reason}{shown}",
            job_id=job_id,
            folder=str(folder),
            state=info.state.value,
            stderr_tail=tail,
        )
    missing = _NO_MODULE.search(tail)
    if missing:
        cause = (
            f"the worker's Python cannot import {missing.group(1)!r}: install hpcbridge[executor] "
            "for the interpreter the executor runs (its python=)"
        )
    elif info.exit_code == 127:
        cause = "the worker's Python was not found: give the executor a python= the nodes have"
    else:
        cause = f"the worker exited with code {info.exit_code} before writing a result"
    return WorkerError(f"job {job_id}: {cause}{shown}", job_id=job_id, folder=str(folder))


def continued_in(job_id: str, folder: PurePath, files: TaskFiles = LOCAL) -> str | None:
    """The job a checkpointable call's run ``job_id`` handed its work to, having been refused
    a requeue (PBS qrerun takes operator rights; the wrapper then submits the job again and
    logs "continued"), or None."""
    for event in files.events(folder):
        if event.kind == "continued" and event.job_id == job_id and event.fields:
            return event.fields[0]
    return None


def _restarts_exhausted(
    job_id: str, folder: PurePath, files: TaskFiles
) -> RestartsExhausted | None:
    """The error for a checkpointable call whose wrapper refused another run (its attempts
    log ends "refused"), or None."""
    checkpoints = folder / checkpointing.CHECKPOINTS
    events = files.events(folder)
    if not events or events[-1].kind != "refused":
        return None
    restarts, limit = events[-1].attempt - 1, int(events[-1].fields[0])
    return RestartsExhausted(
        f"job {job_id} was stopped and requeued {restarts} times without finishing, as many "
        f"as its max_restarts ({limit}) allows: give it a longer walltime or more restarts "
        f"(the executor's checkpoint={{'max_restarts': ...}}); its checkpoints are in "
        f"{checkpoints}",
        job_id=job_id,
        folder=str(folder),
        restarts=restarts,
        max_restarts=limit,
    )


def stderr_tail(folder: PurePath, lines: int = STDERR_LINES, files: TaskFiles = LOCAL) -> str:
    """The last ``lines`` lines the job wrote to its stderr ('' when it wrote none)."""
    text = files.tail(folder / payload.STDERR_FILE, _STDERR_BYTES).decode(errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
