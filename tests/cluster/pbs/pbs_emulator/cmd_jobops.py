"""qdel, qhold, qrls, qrerun, qsig, qalter: one request for all the ids, then PBS's per-id
messages (``qdel: Unknown Job Id 99999.vm``) and the exit status of the last failure."""

from __future__ import annotations

import os
import sys

from pbs_emulator import PBS_VERSION, client, common, errors
from pbs_emulator.getopt import getopt
from pbs_emulator.home import Home
from pbs_emulator.jobopts import QALTER_USAGE, OptionError, build_attrs

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

USAGES = {
    "qdel": "usage: qdel [-W force|suppress_email=X] [-x] job_identifier...\n"
    "       qdel --version\n",
    "qhold": "usage: qhold [-h hold_list] job_identifier...\n       qhold --version\n",
    "qrls": "usage: qrls [-h hold_list] job_identifier...\n       qrls --version\n",
    "qrerun": "usage: qrerun [-W force] job_identifier...\n       qrerun --version\n",
    "qsig": "usage: qsig [-s signal] job_identifier...\n       qsig --version\n",
    "qalter": QALTER_USAGE,
}
OPTSTRINGS = {
    "qdel": "W:x",
    "qhold": "h:",
    "qrls": "h:",
    "qrerun": "W:f",
    "qsig": "s:",
    "qalter": "a:A:c:e:h:j:k:l:m:M:N:o:p:P:r:S:u:W:",
}


def usage(prog: str, lines: list[str] | None = None) -> int:
    for line in lines or []:
        common.err(line)
    sys.stderr.write(USAGES[prog])
    return 2


def request_for(prog: str, options: list[tuple[str, str]]) -> dict[str, Any] | OptionError:
    """The operation and its parameters, or the option error the command reports."""
    values = dict(options)
    if prog == "qdel":
        force = values.get("W", "") == "force"
        return {"op": "delete", "force": force, "history": "x" in values}
    if prog in ("qhold", "qrls"):
        types = values.get("h", "u")
        if not types or set(types) - set("uosnp"):
            return OptionError(f"{prog}: illegal -h value")
        return {"op": "hold" if prog == "qhold" else "release", "types": types}
    if prog == "qrerun":
        return {"op": "rerun", "force": values.get("W") == "force" or "f" in values}
    if prog == "qsig":
        return {"op": "signal", "signal": values.get("s", "SIGTERM")}
    attrs = build_attrs(
        prog, [(o, v) for o, v in options if o != "h"], dict(os.environ), os.getcwd()
    )
    attrs.pop("user_variables", None)
    return {"op": "alter", "attrs": attrs}


def main(prog: str, argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {PBS_VERSION}")
        return 0
    parsed = getopt(prog, argv, OPTSTRINGS[prog])
    if parsed.errors or not parsed.operands:
        return usage(prog, parsed.errors)
    try:
        request = request_for(prog, parsed.options)
    except OptionError as exc:
        request = exc
    home = Home.from_env()
    server = common.server_name(home)
    job_ids, status = common.job_ids(prog, parsed.operands, server)
    if isinstance(request, OptionError):
        if request.usage:
            return usage(prog, [request.message])
        for job_id in job_ids:  # qalter reports a bad value once per job, with the id
            common.err(f"{request.message} {job_id}")
        return request.status
    if not job_ids:
        return status
    answer = client.request({**request, **common.identity(), "ids": job_ids}, home)
    if "error" in answer:
        code, text = answer["error"]
        common.err(f"{prog}: {text}")
        return errors.exit_code(code)
    return common.report(prog, answer["results"]) or status
