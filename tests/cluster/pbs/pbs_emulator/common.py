"""What every command needs: who is asking, which server, how to print PBS-style errors."""

from __future__ import annotations

import grp
import os
import pwd
import sys

from pbs_emulator import errors, ids
from pbs_emulator.home import Home, short_hostname

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

# Real PBS clients report a dead server like this (OpenPBS: errno 15010, exit 162).
CONNECT_ERRNO = errors.SYSTEM


def user() -> str:
    """The requesting user; PBS_EMULATOR_USER pretends to be someone else (tests of
    permissions run as root, which PBS treats as a manager)."""
    return os.environ.get("PBS_EMULATOR_USER") or pwd.getpwuid(os.getuid()).pw_name


def group() -> str:
    if os.environ.get("PBS_EMULATOR_USER"):
        return os.environ["PBS_EMULATOR_USER"]
    try:
        return grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        return str(os.getgid())


def identity() -> dict[str, Any]:
    """Who asks, from where: PBS_EMULATOR_HOST names the submit host (the reference server's
    clients came from ``localhost``), as PBS_EMULATOR_USER names the user."""
    host = os.environ.get("PBS_EMULATOR_HOST") or short_hostname()
    return {"user": user(), "group": group(), "host": host}


def listed(user: str, entries: list[str] | None) -> bool:
    """Whether `user` matches one of PBS's ``user@host`` ACL entries (managers, operators);
    the emulator has one host, so the host part is not checked."""
    return any(entry.partition("@")[0] == user for entry in entries or [])


def server_name(home: Home) -> str:
    try:
        return str(home.load_config()["server_name"])
    except Exception:
        return short_hostname()


def err(line: str) -> None:
    print(line, file=sys.stderr)


def cannot_connect(prog: str, home: Home) -> int:
    err("Connection refused")
    if prog == "pbsnodes":
        err(f"{prog}: cannot connect to server {server_name(home)}, error={CONNECT_ERRNO}")
        return 1
    err(f"{prog}: cannot connect to server {server_name(home)} (errno={CONNECT_ERRNO})")
    return errors.exit_code(CONNECT_ERRNO)


def job_ids(prog: str, operands: list[str], server: str) -> tuple[list[str], int]:
    """Full ids of the operands; malformed ones are reported (exit status 1), as qdel does."""
    out, status = [], 0
    for operand in operands:
        parsed = ids.parse(operand)
        if parsed is None:
            err(f"{prog}: illegally formed job identifier: {operand}")
            status = 1
            continue
        other = parsed.server if parsed.server and parsed.at_other_server(server) else None
        out.append(parsed.full(other or server))
    return out, status


def report(prog: str, results: list[list[Any]]) -> int:
    """Print ``prog: message id`` for every failed id; the exit status of the last failure."""
    status = 0
    for job_id, code, text in results:
        if code:
            err(f"{prog}: {text} {job_id}")
            status = errors.exit_code(code)
    return status
