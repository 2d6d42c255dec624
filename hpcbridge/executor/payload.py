"""What travels between the client and the worker, as files in the task's folder.

A call is one line of JSON naming the client's Python and hpcbridge versions, then the
cloudpickle of ``(fn, args, kwargs)``: the worker reads the line before unpickling anything, so
a different interpreter says so instead of failing somewhere inside pickle. An outcome is the
pickle of a small dict (returned value, raised exception with its traceback text, or the
worker's own complaint) that any hpcbridge can read back.

The worker reads and writes with the standard pickle, which imports cloudpickle only for what
needs it (a function sent by value, a class pickle cannot find): on a node shared by many short
tasks, its import is a good part of a task's CPU time.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hpcbridge.errors import ConfigError, SpecError

CALL_FILE = "call.pkl"
RESULT_FILE = "result.pkl"
STDERR_FILE = "stderr"

Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class VersionMismatch(Exception):
    """The worker is not the client's Python or hpcbridge version (its message says which)."""


def versions() -> dict[str, str]:
    """What must match between client and worker: Python's major.minor (cloudpickle's
    functions carry bytecode) and hpcbridge's own version (the outcome format).

    The version is read from the package already loaded (this module is in it), not through
    importlib.metadata, whose import alone costs each task 45 ms of a shared node's CPU."""
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "hpcbridge": sys.modules["hpcbridge"].__version__,
    }


def require_cloudpickle() -> None:
    """Refuse early, naming the extra to install, where the client would lack cloudpickle
    (it is imported only when a call is pickled)."""
    try:
        import cloudpickle  # type: ignore[import-untyped]  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "Python functions as jobs need cloudpickle: pip install 'hpcbridge[executor]'"
        ) from exc


def dump_call(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], *, item: str = ""
) -> bytes:
    """The call file's bytes; an unpicklable function or argument is refused here, before
    anything is submitted, naming which one (``item`` says which call of a map)."""
    import cloudpickle

    header = json.dumps(versions()).encode() + b"\n"
    try:
        return header + bytes(cloudpickle.dumps((fn, tuple(args), dict(kwargs))))
    except Exception as exc:
        raise SpecError(
            f"{item}{_culprit(fn, args, kwargs)} cannot be sent to the cluster"
        ) from exc


def read_call(data: bytes) -> Call:
    """The call in a call file, once its versions are known to match this interpreter's."""
    header, _, body = data.partition(b"\n")
    client, here = json.loads(header), versions()
    differing = [
        f"{key} {client[key]} there, {here[key]} here"
        for key in here
        if client.get(key) != here[key]
    ]
    if differing:
        raise VersionMismatch(
            f"the worker's Python ({sys.executable}) is not the client's: "
            f"{'; '.join(differing)}; give the executor python= an interpreter like the client's"
        )
    call: Call = pickle.loads(body)
    return call


def dump_outcome(outcome: dict[str, Any]) -> bytes:
    """The result file's bytes. A value or exception that will not pickle is replaced by a
    description of it, so the client always learns what happened."""
    try:
        return _pickled(outcome)
    except Exception as exc:
        if outcome["kind"] == "returned":
            kind = type(outcome["value"]).__name__
            problem = f"the function returned a {kind}, which cannot be pickled: {exc}"
            return _pickled({"kind": "worker", "message": problem})
        return _pickled({**outcome, "exception": None})


def load_outcome(data: bytes) -> dict[str, Any]:
    """An outcome read back by the client."""
    outcome: dict[str, Any] = pickle.loads(data)
    return outcome


def _pickled(value: Any) -> bytes:
    """pickle's bytes for ``value``, or cloudpickle's when pickle cannot (a class defined in
    the function's own code, say); raises what cloudpickle raises when neither can."""
    try:
        return pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError):
        import cloudpickle

        return bytes(cloudpickle.dumps(value))


def _culprit(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Which part of a call will not pickle, named as the user wrote it, and why."""
    import cloudpickle

    parts: list[tuple[str, Any]] = [(f"the function {getattr(fn, '__qualname__', fn)!r}", fn)]
    parts += [(f"argument {index + 1}", value) for index, value in enumerate(args)]
    parts += [(f"keyword argument {name!r}", value) for name, value in kwargs.items()]
    for label, value in parts:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return f"{label} ({type(value).__name__}: {exc})"
    return "the call"
