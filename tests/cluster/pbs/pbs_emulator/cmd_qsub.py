"""qsub: read the script (file, stdin, or ``-- command``), honour its #PBS directives (command
line options win), check what the real client checks, submit, print the job id."""

from __future__ import annotations

import os
import shlex
import sys

from pbs_emulator import PBS_VERSION, client, common, errors
from pbs_emulator.getopt import getopt
from pbs_emulator.home import Home
from pbs_emulator.jobopts import QSUB_USAGE, OptionError, build_attrs

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

OPTSTRING = "a:A:c:C:e:fhIj:J:k:l:m:M:N:o:p:P:q:r:R:S:u:v:VW:Xz"
O_VARIABLES = ("HOME", "LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ")


def directive_options(script: str, prefix: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Options from ``#PBS`` lines, read until the first command line of the script."""
    options: list[tuple[str, str]] = []
    problems: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if line.startswith(prefix):
            try:
                tokens = shlex.split(line[len(prefix) :], comments=True)
            except ValueError:
                problems.append(f"qsub: directive error: {line}")
                continue
            parsed = getopt("qsub", tokens, OPTSTRING, permute=False)
            problems += parsed.errors
            options += parsed.options
        elif not stripped.startswith("#"):
            break
    return options, problems


def read_script(parsed_operands: list[str], dashdash: bool) -> tuple[str, str]:
    """(script text, default job name). Raises OptionError like qsub for a missing file."""
    if dashdash:
        if not parsed_operands:
            raise OptionError("qsub: no executable supplied")
        return shlex.join(parsed_operands) + "\n", os.path.basename(parsed_operands[0])
    if parsed_operands:
        path = parsed_operands[0]
        try:
            with open(path) as handle:
                return handle.read(), os.path.basename(path)
        except OSError as exc:
            raise OptionError(f"qsub: script file:: {exc.strerror}", status=1, usage=False) from exc
    return sys.stdin.read(), "STDIN"


def variable_list(
    env: dict[str, str], cwd: str, extra: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Variable_List as qsub builds it: PBS_O_* from the environment, then -v/-V."""
    out = [(f"PBS_O_{name}", env[name]) for name in O_VARIABLES if name in env]
    out += [
        ("PBS_O_INTERACTIVE_AUTH_METHOD", "resvport"),
        ("PBS_O_INTERACTIVE_ENCRYPT_METHOD", ""),
        ("PBS_O_WORKDIR", cwd),
        ("PBS_O_SYSTEM", os.uname().sysname),
    ]
    return out + extra


def prepare(argv: list[str]) -> dict[str, Any] | OptionError:
    """The submit request for `argv`, or the error qsub reports before contacting a server."""
    parsed = getopt("qsub", argv, OPTSTRING, permute=False)
    if parsed.errors:
        return OptionError("\n".join(parsed.errors))
    if parsed.has("I"):
        return OptionError(
            "qsub: interactive jobs are not supported by the PBS emulator", status=1, usage=False
        )
    try:
        script, default_name = read_script(parsed.operands, parsed.dashdash)
        prefix = parsed.last("C") or os.environ.get("PBS_DPREFIX") or "#PBS"
        from_script, problems = directive_options(script, prefix)
        if problems:
            return OptionError("\n".join(problems))
        env, cwd = dict(os.environ), os.getcwd()
        attrs = build_attrs("qsub", from_script + parsed.options, env, cwd)
    except OptionError as exc:
        return exc
    attrs.setdefault("name", default_name)
    attrs["variables"] = variable_list(env, cwd, attrs.pop("user_variables", []))
    attrs["submit_args"] = " ".join(argv)
    return {"op": "submit", **common.identity(), "cwd": cwd, "script": script, "attrs": attrs}


def main(prog: str, argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {PBS_VERSION}")
        return 0
    request = prepare(argv)
    if isinstance(request, OptionError):
        common.err(request.message)
        if request.usage:
            sys.stderr.write(QSUB_USAGE)
        return request.status
    answer = client.request(request, Home.from_env())
    if "error" in answer:
        code, text = answer["error"]
        common.err(f"{prog}: {text}")
        return errors.exit_code(code)
    if "z" not in {o for o, _ in getopt("qsub", argv, OPTSTRING, permute=False).options}:
        print(answer["id"])
    return 0
