"""Checkpointable functions: a call that hands over its progress when its job must stop.

A callable with a ``checkpoint`` method (submitit's pattern) runs under the job checkpoint
wrapper (templates/common/checkpoint.sh.j2), so the time limit, requeue, manifests, the
attempts log and ``max_restarts`` are those of any checkpointed job. At the warning signal
(or a periodic checkpoint) the wrapper runs this module as its checkpoint command, which asks
the worker for the call to go on with: SIGUSR1 to the worker, whose handler runs in its main
thread between two bytecodes of the function, calls ``fn.checkpoint(*args, **kwargs)`` and
writes the Resubmission it returns beside the call (NEXT_CALL). This module moves that file
into the checkpoint the wrapper then commits; the requeued job's next run starts the worker
on it (the wrapper's restart command names ``$HPCBRIDGE_CHECKPOINT/call.pkl``).

A Resubmission is written as a call file, with the client's versions in its header, so a
restart on another interpreter is refused as the first run would be. When ``checkpoint``
raises, that is the call's outcome: the task fails with it, and a later run, seeing the
result, ends at once. A request in the worker's first moments, before its handler is in
place, ends it as SIGUSR1 does by default; the wrapper then keeps the newest earlier
checkpoint, as for any checkpoint that could not be taken.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hpcbridge.executor import payload
from hpcbridge.executor.resubmission import Resubmission
from hpcbridge.files import write_atomically

# The call's checkpoint directory, in its folder (the wrapper's, as for any checkpointed job).
CHECKPOINTS = "checkpoints"
# The worker's answer to a request, in the task's folder, until it moves into the checkpoint.
NEXT_CALL = "next-call.pkl"
# How the checkpoint command asks the worker (the wrapper's own signal stops at the batch shell).
ASK = signal.SIGUSR1
_POLL_S = 0.05


class CheckpointFailed(BaseException):
    """Raised into the function when its ``checkpoint`` failed, so that the worker reports
    ``error`` as the call's outcome. A BaseException, which the function's own ``except
    Exception`` does not swallow."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def checkpointable(fn: Callable[..., Any]) -> bool:
    """``fn`` can say how to continue: it has a ``checkpoint`` method."""
    return callable(getattr(fn, "checkpoint", None))


@contextlib.contextmanager
def answering(
    folder: Path, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Iterator[None]:
    """While the call runs, each ASK writes the call to continue from into ``folder``'s
    NEXT_CALL; the function goes on running until the wrapper stops it (a periodic checkpoint
    does not stop it). Once the call is over, a request is ignored: the result is coming."""

    def on_ask(signum: int, frame: FrameType | None) -> None:
        try:
            resubmission = fn.checkpoint(*args, **kwargs)  # type: ignore[attr-defined]
            if not isinstance(resubmission, Resubmission):
                raise TypeError(
                    f"{name_of(fn)}.checkpoint returned {type(resubmission).__name__}; return "
                    "hpcbridge.executor.Resubmission(fn, *args, **kwargs), the call to "
                    "continue from"
                )
            if not checkpointable(resubmission.fn):
                raise TypeError(
                    f"{name_of(fn)}.checkpoint returned a call of {name_of(resubmission.fn)}, "
                    "which has no checkpoint method: the next run could not be checkpointed"
                )
            blob = payload.dump_call(resubmission.fn, resubmission.args, resubmission.kwargs)
        except Exception as exc:
            exc.add_note(f"raised by {name_of(fn)}.checkpoint, called for a checkpoint of the job")
            raise CheckpointFailed(exc) from exc
        write_atomically(folder / NEXT_CALL, blob)

    signal.signal(ASK, on_ask)
    try:
        yield
    finally:
        signal.signal(ASK, signal.SIG_IGN)


def name_of(fn: Callable[..., Any]) -> str:
    """A function's qualified name, or a callable object's class name."""
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def take(folder: Path, worker_pid: int, target: Path, within: float) -> str | None:
    """Ask the worker for its call to continue from and move it to ``target``; None once
    done, else why there is none (the wrapper then keeps the newest earlier checkpoint).

    The worker is watched through a pidfd: it is the wrapper's child, not ours, and a
    process that has exited but is not yet reaped still answers kill(pid, 0)."""
    answer = folder / NEXT_CALL
    answer.unlink(missing_ok=True)  # a request of an earlier run, never moved
    try:
        worker = os.pidfd_open(worker_pid)
    except ProcessLookupError:
        return "the worker has ended"
    try:
        signal.pidfd_send_signal(worker, ASK)
        deadline = time.monotonic() + within
        while not answer.exists():
            if (folder / payload.RESULT_FILE).exists():
                return "the call has returned; its result is in"
            ended = bool(select.select([worker], [], [], _POLL_S)[0])
            if answer.exists():
                break
            if ended:
                return "the worker ended without answering"
            if time.monotonic() > deadline:
                return f"the worker did not answer within {within:g} s"
    except ProcessLookupError:
        return "the worker has ended"
    finally:
        os.close(worker)
    os.replace(answer, target)
    return None


def answer_time(signal_seconds: int) -> int:
    """How long the checkpoint command waits for the worker: what the warning leaves after
    a quarter of it (at least 5 s) kept for the commit, the requeue and the stop."""
    return max(1, signal_seconds - max(5, signal_seconds // 4))


def main(argv: list[str] | None = None) -> int:
    """The wrapper's checkpoint command: ``python -m hpcbridge.executor.checkpointing FOLDER
    SECONDS``, with the wrapper's HPCBRIDGE_WORK_PID and HPCBRIDGE_CHECKPOINT_TMP."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m hpcbridge.executor.checkpointing FOLDER SECONDS", file=sys.stderr)
        return 2
    folder, within = Path(args[0]), float(args[1])
    target = Path(os.environ["HPCBRIDGE_CHECKPOINT_TMP"]) / payload.CALL_FILE
    problem = take(folder, int(os.environ["HPCBRIDGE_WORK_PID"]), target, within)
    if problem is not None:
        print(f"hpcbridge executor: no call to continue from: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
