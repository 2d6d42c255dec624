"""qsub/qalter options -> job attributes, with the checks the real client does itself.

Client-side checks never reach the server and use up no job id: ``illegal -N value`` (plus the
usage text, exit 2) for malformed options, and ``Illegal attribute or resource value
Resource_List.walltime`` (exit 166) for a resource value of the wrong syntax. Unknown
resources and queues are left to the server, as in the reference.
"""

from __future__ import annotations

import os
import re
import time

from pbs_emulator import errors, ids, resources, units

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

QSUB_USAGE = """usage: qsub [-a date_time] [-A account_string] [-c interval]
\t[-C directive_prefix] [-e path] [-f ] [-h ] [-I [-X]] [-j oe|eo] [-J X-Y[:Z]]
\t[-k keep] [-l resource_list] [-m mail_options] [-M user_list]
\t[-N jobname] [-o path] [-p priority] [-P project] [-q queue] [-r y|n]
\t[-R o|e|oe] [-S path] [-u user_list] [-W otherattributes=value...]
\t[-v variable_list] [-V ] [-z] [script | -- command [arg1 ...]]
       qsub --version
"""
QALTER_USAGE = """usage: qalter [-a date_time] [-A account_string] [-c interval] [-e path]
\t[-h hold_list] [-j oe|eo|n] [-k keep] [-l resource_list] [-m mail_options]
\t[-M user_list] [-N jobname] [-o path] [-p priority] [-P project] [-r y|n]
\t[-S path] [-u user_list] [-W dependency_list] job_identifier...
       qalter --version
"""
DEPEND_KINDS = {
    "after",
    "afterok",
    "afternotok",
    "afterany",
    "before",
    "beforeok",
    "beforenotok",
    "beforeany",
    "on",
}
W_ATTRIBUTES = {
    "depend",
    "group_list",
    "stagein",
    "stageout",
    "umask",
    "block",
    "sandbox",
    "run_count",
}
_NAME = re.compile(r"^[A-Za-z0-9_+\-][\x21-\x7e]{0,235}$")
_ARRAY = re.compile(r"^(\d+)-(\d+)(?::(\d+))?(?:%(\d+))?$")


class OptionError(Exception):
    """An option the client refuses: the line(s) to print, the exit status, usage or not."""

    def __init__(self, message: str, status: int = 2, usage: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.usage = usage


def illegal(prog: str, letter: str) -> OptionError:
    return OptionError(f"{prog}: illegal -{letter} value")


def split_w(value: str) -> list[tuple[str, str]]:
    """``-W a=1,depend=afterok:1,afterany:2``: a comma starts a new attribute only if the
    next piece has an ``=`` (depend lists use commas themselves)."""
    items: list[tuple[str, str]] = []
    for piece in value.split(","):
        name, sep, val = piece.partition("=")
        if sep and re.match(r"^\w+$", name):
            items.append((name, val))
        elif items:
            items[-1] = (items[-1][0], f"{items[-1][1]},{piece}")
        else:
            items.append((piece, ""))
    return items


def parse_depend(value: str) -> list[tuple[str, list[str]]] | None:
    """``afterok:1.vm:2.vm,afterany:3`` as (kind, ids), or None when malformed."""
    out: list[tuple[str, list[str]]] = []
    for item in value.split(","):
        kind, *targets = item.split(":")
        if kind not in DEPEND_KINDS or not targets:
            return None
        if kind == "on":
            if not targets[0].isdigit():
                return None
            continue
        parsed = [ids.parse(t) for t in targets]
        # A whole array (10[].vm) may be waited on, one subjob (10[1].vm) may not: qsub
        # refuses it as an illegal -W value (multi-qsub_errors_plain-user_cases.txt).
        if any(p is None or p.index for p in parsed):
            return None
        out.append((kind, targets))
    return out


def split_variables(value: str) -> list[str]:
    """Split a -v list on commas outside double or single quotes."""
    items, current, quote = [], "", ""
    for char in value:
        if quote:
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in "\"'":
            quote = char
        elif char == ",":
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [i for i in items if i]


def absolute_path(value: str, cwd: str) -> str:
    host, sep, path = value.rpartition(":")
    if not sep:
        path, host = value, ""
    path = path if os.path.isabs(path) else os.path.normpath(os.path.join(cwd, path))
    return f"{host}:{path}" if host else path


def build_attrs(
    prog: str, options: list[tuple[str, str]], env: dict[str, str], cwd: str
) -> dict[str, Any]:
    """Job attributes from options in command order (later ones win), validated as qsub does."""
    attrs: dict[str, Any] = {}
    res: dict[str, str] = {}
    variables: list[tuple[str, str]] = []
    for letter, value in options:
        if letter == "l":
            pairs = resources.split_list(value)
            if isinstance(pairs, str):
                raise illegal(prog, "l")
            for name, val in pairs:
                bad = resources.value_error(name, val)
                if bad:
                    message = f"{prog}: {errors.MESSAGES[errors.BADATVAL]} {bad}"
                    raise OptionError(message, errors.exit_code(errors.BADATVAL), usage=False)
                res[name] = val
        elif letter == "v":
            for item in split_variables(value):
                name, sep, val = item.partition("=")
                variables.append((name, val if sep else env.get(name, "")))
        elif letter == "V":
            variables += [(k, v) for k, v in env.items() if not k.startswith("PBS_O_")]
        else:
            simple_option(prog, letter, value, attrs, cwd)
    if res:
        attrs["resources"] = res
    if variables:
        attrs["user_variables"] = variables
    return attrs


def _array(prog: str, value: str) -> list[int | None]:
    match = _ARRAY.match(value)
    if not match:
        raise illegal(prog, "J")
    first, last, step, limit = (int(g) if g else None for g in match.groups())
    if first is None or last is None or last <= first or step == 0 or limit == 0:
        raise illegal(prog, "J")
    return [first, last, step or 1, limit]


def _depend(prog: str, value: str) -> list[tuple[str, list[str]]] | None:
    depend = None
    for name, val in split_w(value):
        if name not in W_ATTRIBUTES:
            raise illegal(prog, "W")
        if name == "depend":
            depend = parse_depend(val)
            if depend is None:
                raise illegal(prog, "W")
    return depend


def _exec_time(prog: str, value: str) -> int:
    stamp = units.parse_exec_time(value, time.time())
    if stamp is None:
        raise illegal(prog, "a")
    return stamp


def _priority(prog: str, value: str) -> int:
    if not re.match(r"^-?\d+$", value) or not -1024 <= int(value) <= 1023:
        raise illegal(prog, "p")
    return int(value)


def _name(prog: str, value: str) -> str:
    if not _NAME.match(value):
        raise illegal(prog, "N")
    return value


def _mail_points(prog: str, value: str) -> str:
    if not (value == "n" or (value and set(value) <= set("abej"))):
        raise illegal(prog, "m")
    return value


def _choice(letter: str, choices: tuple[str, ...]) -> Any:
    def check(prog: str, value: str) -> str:
        if value not in choices:
            raise illegal(prog, letter)
        return value

    return check


# option letter -> (attribute, checker turning the option value into the attribute value)
CHECKED = {
    "N": ("name", _name),
    "J": ("array", _array),
    "W": ("depend", _depend),
    "a": ("exec_time", _exec_time),
    "p": ("priority", _priority),
    "m": ("mail_points", _mail_points),
    "j": ("join", _choice("j", ("oe", "eo", "n"))),
    "r": ("rerunable", _choice("r", ("y", "n"))),
}
PLAIN = {"A": "account", "P": "project", "M": "mail_users", "S": "shell", "k": "keep"}


def simple_option(prog: str, letter: str, value: str, attrs: dict[str, Any], cwd: str) -> None:
    """Every option but -l/-v/-V: one attribute each."""
    if letter in CHECKED:
        key, check = CHECKED[letter]
        result = check(prog, value)
        if letter == "r":
            result = result == "y"
        if result is not None:
            attrs[key] = result
    elif letter == "q":
        attrs["queue"] = value.split("@", maxsplit=1)[0]
    elif letter in ("o", "e"):
        attrs["out_path" if letter == "o" else "err_path"] = absolute_path(value, cwd)
    elif letter in PLAIN:
        attrs[PLAIN[letter]] = value
    elif letter == "h":
        attrs["hold"] = True
