"""Job identifiers: ``12.vm``, arrays ``10[].vm``, subjobs ``10[3].vm``.

Commands accept the short forms real PBS accepts (``12``, ``10[]``, ``10[3]``, ``12.vm@vm``)
and the server always answers with the full form.
"""

from __future__ import annotations

import re

_ID = re.compile(r"^(\d+)(\[(\d*)\])?(?:\.([A-Za-z0-9][A-Za-z0-9.\-_]*))?(?:@[\w.\-]+)?$")


class JobId:
    """A parsed job id: sequence number, array part (None, "" for the array, "3" for a subjob)."""

    __slots__ = ("index", "seq", "server")

    def __init__(self, seq: int, index: str | None, server: str | None) -> None:
        self.seq = seq
        self.index = index
        self.server = server

    def full(self, server: str) -> str:
        """The canonical id at `server`."""
        bracket = "" if self.index is None else f"[{self.index}]"
        return f"{self.seq}{bracket}.{server}"

    def at_other_server(self, server: str) -> bool:
        """True when the id names a different server (so it cannot be one of ours)."""
        return self.server is not None and self.server.split(".")[0] != server


def parse(text: str) -> JobId | None:
    """The JobId in `text`, or None when it is not a well-formed job identifier."""
    match = _ID.match(text.strip())
    if not match:
        return None
    seq, bracket, index, server = match.groups()
    return JobId(int(seq), None if bracket is None else index, server)


def full_id(seq: int, server: str, index: str | None = None) -> str:
    """`12.vm`, `10[].vm` (index "") or `10[3].vm`."""
    return JobId(seq, index, None).full(server)


def split_subjob(job_id: str) -> tuple[str, int] | None:
    """For `10[3].vm`: (`10[].vm`, 3); None for anything that is not a subjob id."""
    match = re.match(r"^(\d+)\[(\d+)\](\..*)$", job_id)
    if not match:
        return None
    return f"{match.group(1)}[]{match.group(3)}", int(match.group(2))


def sort_key(job_id: str) -> tuple[int, int]:
    """Order by sequence number, an array before its subjobs, subjobs by index."""
    match = re.match(r"^(\d+)(?:\[(\d*)\])?", job_id)
    if not match:
        return (1 << 62, 0)
    index = match.group(2)
    return (int(match.group(1)), -1 if not index else int(index))
