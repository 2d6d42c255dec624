"""The worker: ``python -m hpcbridge.executor.run_task FOLDER`` on the compute node.

It runs the call in FOLDER and always leaves a result file there, even when the call cannot
be read (another Python, a module this interpreter cannot import) or the function raises; only
the scheduler ending the job leaves none, which the client then reports as such. Its exit
status is 0 when the function returned, 1 otherwise, so the scheduler's accounting agrees.

A checkpointable call (hpcbridge.executor.checkpointing) answers the wrapper's requests while
it runs; its restarts name the checkpoint's call file after FOLDER. A run that finds the
result already there (the job was requeued as the call returned) ends at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from hpcbridge.executor import checkpointing, payload
from hpcbridge.files import write_atomically


def run(call_file: Path, folder: Path) -> dict[str, Any]:
    """The outcome of the call in ``call_file``, as a dict for payload.dump_outcome; a
    checkpointable one answers requests for its call to continue from into ``folder``."""
    try:
        fn, args, kwargs = payload.read_call(call_file.read_bytes())
    except payload.VersionMismatch as exc:
        return {"kind": "worker", "message": str(exc)}
    except ImportError as exc:
        return {"kind": "worker", "message": _cannot_import(exc)}
    try:
        if not checkpointing.checkpointable(fn):
            return {"kind": "returned", "value": fn(*args, **kwargs)}
        with checkpointing.answering(folder, fn, args, kwargs):
            return {"kind": "returned", "value": fn(*args, **kwargs)}
    except checkpointing.CheckpointFailed as failed:
        return _raised(failed.error)
    except (Exception, SystemExit) as exc:
        return _raised(exc)


def _raised(exc: BaseException) -> dict[str, Any]:
    """The outcome of a call that raised ``exc``, its traceback also on stderr."""
    text = "".join(traceback.format_exception(exc))
    print(text, file=sys.stderr, end="")
    where = f"job {os.environ.get('HPCBRIDGE_JOB_ID', '?')} on {os.uname().nodename}"
    return {
        "kind": "raised",
        "exception": exc,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "traceback": f"remote traceback ({where}):\n{text}",
    }


def _cannot_import(exc: ImportError) -> str:
    """Which module the function needs that this interpreter lacks, and the ways out."""
    module = exc.name or str(exc)
    return (
        f"the worker's Python ({sys.executable}, {sys.version.split()[0]}) cannot import "
        f"module {module!r}, which the function needs ({exc}): install it there, put it on "
        "PYTHONPATH through the executor's env=, or send it by value with "
        "cloudpickle.register_pickle_by_value"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the call in FOLDER (or, on a restart, the CALL_FILE named after it); the exit
    status says whether it returned."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m hpcbridge.executor.run_task FOLDER [CALL_FILE]", file=sys.stderr)
        return 2
    folder = Path(args[0])
    if (folder / payload.RESULT_FILE).exists():
        print(
            "hpcbridge executor: this call has its result already; nothing to run", file=sys.stderr
        )
        return 0
    call_file = Path(args[1]) if len(args) == 2 else folder / payload.CALL_FILE
    outcome = run(call_file, folder)
    write_atomically(folder / payload.RESULT_FILE, payload.dump_outcome(outcome))
    return 0 if outcome["kind"] == "returned" else 1


if __name__ == "__main__":
    sys.exit(main())
