"""The worker: ``python -m hpcbridge.executor.run_task FOLDER`` on the compute node.

It runs the call in FOLDER and always leaves a result file there, even when the call cannot
be read (another Python, a module this interpreter cannot import) or the function raises; only
the scheduler ending the job leaves none, which the client then reports as such. Its exit
status is 0 when the function returned, 1 otherwise, so the scheduler's accounting agrees.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from hpcbridge.executor import payload
from hpcbridge.files import write_atomically


def run(call_file: Path) -> dict[str, Any]:
    """The outcome of the call in ``call_file``, as a dict for payload.dump_outcome."""
    try:
        fn, args, kwargs = payload.read_call(call_file.read_bytes())
    except payload.VersionMismatch as exc:
        return {"kind": "worker", "message": str(exc)}
    except ImportError as exc:
        return {"kind": "worker", "message": _cannot_import(exc)}
    try:
        return {"kind": "returned", "value": fn(*args, **kwargs)}
    except (Exception, SystemExit) as exc:
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
    """Run the call in the one folder named; the exit status says whether it returned."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hpcbridge.executor.run_task FOLDER", file=sys.stderr)
        return 2
    folder = Path(args[0])
    outcome = run(folder / payload.CALL_FILE)
    write_atomically(folder / payload.RESULT_FILE, payload.dump_outcome(outcome))
    return 0 if outcome["kind"] == "returned" else 1


if __name__ == "__main__":
    sys.exit(main())
