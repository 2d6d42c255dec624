"""The one name a function's own code needs from the executor on a compute node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Resubmission:
    """What a checkpointable function's ``checkpoint`` returns: the call to continue from,
    ``Resubmission(fn, *args, **kwargs)``, usually the callable object itself, whose state
    carries the progress made so far. It is pickled when the checkpoint is taken."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"Resubmission needs a callable to continue with, not {fn!r}")
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"Resubmission({self.fn!r}, *{self.args!r}, **{self.kwargs!r})"
