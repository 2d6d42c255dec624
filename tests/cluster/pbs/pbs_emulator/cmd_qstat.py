"""qstat: jobs (default table, -a, -w, -n, -1, -s, -t, -x, -H, -u, -f, -F json|dsv), queues (-Q),
the server (-B). Column layouts are measured from the reference captures.

With ``json_output`` off in the configuration, qstat behaves like an older one that has no
``-F``: the option is refused by getopt, as such a qstat would.
"""

from __future__ import annotations

import sys
import time

from pbs_emulator import PBS_VERSION, client, common, errors, ids, output
from pbs_emulator.getopt import Parsed, getopt
from pbs_emulator.home import Home
from pbs_emulator.status import Attr

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

OPTSTRING = "aBD:EfF:GHiJMn1pqQrstTu:wxW:"
OLD_OPTSTRING = "aBEfGHiJMn1pqQrstTu:wxW:"
USAGE_LINES = (
    "qstat [-f] [-J] [-p] [-t] [-x] [-E] [-F format | -w] [-D delim]"
    " [ job_identifier... | destination... ]",
    "qstat [-a|-i|-r|-H|-T] [-J] [-t] [-u user] [-n] [-s] [-G|-M] [-1] [-w]",
    "\t[ job_identifier... | destination... ]",
    "qstat -Q [-f] [-F format] [-D delim] [ destination... ]",
    "qstat -q [-G|-M] [ destination... ]",
    "qstat -B [-f] [-F format] [-D delim] [ server_name... ]",
    "qstat --version",
)
USAGE = "usage: \n" + "".join(f"{line}\n" for line in USAGE_LINES)
CONFLICT = "qstat: conflicting options.\n" + USAGE
# What a qstat without -F/-D prints (json_output off).
OLD_USAGE = "usage: \n" + "".join(
    f"{line}\n"
    for line in (
        "qstat [-f] [-J] [-p] [-t] [-x] [-E] [-w] [ job_identifier... | destination... ]",
        *USAGE_LINES[1:3],
        "qstat -Q [-f] [ destination... ]",
        USAGE_LINES[4],
        "qstat -B [-f] [ server_name... ]",
        USAGE_LINES[6],
    )
)
ALT_HEADER = (
    "Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time",
    "--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----",
)
WIDE_HEADER = (
    "Job ID                         Username        Queue           Jobname        "
    " SessID   NDS  TSK   Memory Time  S Time",
    "------------------------------ --------------- --------------- ---------------"
    " -------- ---- ----- ------ ----- - -----",
)
ALT_WIDTHS = (15, 8, 8, 10, 6, 3, 3, 6, 5, 5)
WIDE_WIDTHS = (30, 15, 15, 15, 8, 4, 5, 6, 5, 5)


def cut(value: str, width: int) -> str:
    """Fit a column: too-long values keep width-1 characters and end with ``*``."""
    return value if len(value) <= width else value[: width - 1] + "*"


def attr(attrs: list[Attr], name: str, resc: str | None = None) -> str | None:
    for key, res, value in attrs:
        if key == name and res == resc:
            return value
    return None


def default_rows(entries: list[list[Any]]) -> list[str]:
    if not entries:
        return []
    lines = [
        "Job id            Name             User              Time Use S Queue",
        "----------------  ---------------- ----------------  -------- - -----",
    ]
    for job_id, attrs in entries:
        owner = (attr(attrs, "Job_Owner") or "").split("@")[0]
        used = attr(attrs, "resources_used", "cput") or "0"
        name, queue = attr(attrs, "Job_Name") or "", attr(attrs, "queue") or ""
        lines.append(
            f"{cut(job_id, 17):<17} {cut(name, 16):<16} {cut(owner, 16):<16}"
            f"  {used:>8} {attr(attrs, 'job_state')} {cut(queue, 16):<16}"
        )
    return lines


def hhmm(duration: str | None) -> str | None:
    if not duration:
        return None
    parts = duration.split(":")
    return f"{parts[0]}:{parts[1]}" if len(parts) == 3 else duration


def alt_row(job_id: str, attrs: list[Attr], widths: tuple[int, ...]) -> str:
    """One line of qstat -a / -a -w; missing values print as ``-- `` right-aligned."""
    state = attr(attrs, "job_state") or "?"
    running = state in ("R", "S", "E")
    values = [
        job_id,
        (attr(attrs, "Job_Owner") or "").split("@")[0],
        attr(attrs, "queue") or "",
        attr(attrs, "Job_Name") or "",
        attr(attrs, "session_id") if running else None,
        attr(attrs, "Resource_List", "nodect"),
        attr(attrs, "Resource_List", "ncpus"),
        attr(attrs, "Resource_List", "mem"),
        hhmm(attr(attrs, "Resource_List", "walltime")),
        hhmm(attr(attrs, "resources_used", "walltime")) if running else None,
    ]
    cells = []
    for position, (value, width) in enumerate(zip(values, widths, strict=True)):
        if position < 4:
            cells.append(f"{cut(value or '', width):<{width}}")
        else:
            cells.append(f"{cut(value, width) if value else '-- ':>{width}}")
        if position == 8:
            cells.append(state)
    return " ".join(cells)


def alt_rows(entries: list[list[Any]], parsed: Parsed, server: str) -> list[str]:
    if not entries:
        return []
    widths = WIDE_WIDTHS if parsed.has("w") else ALT_WIDTHS
    header = WIDE_HEADER if parsed.has("w") else ALT_HEADER
    width = sum(widths) + len(widths) + 1
    lines = [
        "",
        f"{server}: ",
        f"{'Req' + chr(39) + 'd  Req' + chr(39) + 'd   Elap':>{width - 1}}",
        *header,
    ]
    for job_id, attrs in entries:
        line = alt_row(job_id, attrs, widths)
        hosts = attr(attrs, "exec_host") if attr(attrs, "job_state") in ("R", "S", "E") else None
        if parsed.has("n") and parsed.has("1"):
            line += f" {hosts}" if hosts else "  -- "
        lines.append(line)
        if parsed.has("n") and not parsed.has("1"):
            lines.append(f"   {hosts}" if hosts else "    -- ")
        if parsed.has("s"):
            comment = attr(attrs, "comment")
            lines.append(f"   {comment}" if comment else "    -- ")
    return lines


def filtered(entries: list[list[Any]], parsed: Parsed, named: bool) -> list[list[Any]]:
    """-u, -i, -r, -H, -J and queue operands narrow the listing."""
    users = set((parsed.last("u") or "").replace(" ", "").split(",")) - {""}
    out = []
    for job_id, attrs in entries:
        state = attr(attrs, "job_state")
        owner = (attr(attrs, "Job_Owner") or "").split("@")[0]
        if users and owner not in users:
            continue
        if parsed.has("i") and state not in ("Q", "H", "W"):
            continue
        if parsed.has("r") and state not in ("R", "S"):
            continue
        if parsed.has("H") and not named and state not in ("F", "X"):
            continue
        if parsed.has("J") and "[" not in job_id:
            continue
        if parsed.has("J") and parsed.has("t") and "[]" in job_id:
            continue  # -J -t lists the subjobs alone (multi-array-limit2_cases.txt)
        out.append([job_id, attrs])
    return out


def header(server: str) -> dict[str, Any]:
    return {"timestamp": int(time.time()), "pbs_version": PBS_VERSION, "pbs_server": server}


def print_full(
    kind: str, objects: list[tuple[str, list[Attr]]], fmt: str, delim: str, server: str
) -> None:
    """-f output of jobs ("Job Id"), queues ("Queue") or the server ("Server")."""
    if fmt == "json":
        document = header(server)
        key = {"Job Id": "Jobs", "Queue": "Queue", "Server": "Server"}[kind]
        if objects:
            document[key] = {name: output.attrs_to_dict(attrs) for name, attrs in objects}
        sys.stdout.write(output.write_json(document))
    elif fmt == "dsv":
        sys.stdout.write(
            "".join(output.dsv_line(f"{kind}: {name}", attrs, delim) for name, attrs in objects)
        )
    else:
        sys.stdout.write(
            "".join(output.full_text(f"{kind}: {name}", attrs) for name, attrs in objects)
        )


def first_job_only(entries: list[list[Any]], named: list[str]) -> list[list[Any]]:
    """What OpenPBS 23.06 prints for ``qstat -f -F json ID1 ID2 ...``: the first of the named
    jobs it knows, in the order given (with its subjobs under -t), and none of the others
    (multi-id_qstat_cases.txt); the text and DSV formats list them all."""
    known = {entry[0] for entry in entries}
    first = next((job_id for job_id in named if job_id in known), None)
    return [e for e in entries if first in (e[0], (ids.split_subjob(e[0]) or ("",))[0])]


def job_status(parsed: Parsed, home: Home, server: str, fmt: str) -> int:
    named, queues = [], []
    for operand in parsed.operands:
        if ids.parse(operand) is not None:
            named += common.job_ids("qstat", [operand], server)[0]
        else:
            queues.append(operand.split("@")[0])
    history = parsed.has("x") or parsed.has("H")
    request = {
        "op": "statjob",
        "ids": named,
        "history": history,
        "subjobs": parsed.has("t") or parsed.has("J"),
    }
    answer = client.request(request, home)
    entries = [e for e in answer["jobs"] if not queues or attr(e[1], "queue") in queues]
    entries = filtered(entries, parsed, bool(named))
    if parsed.has("f") and fmt == "json" and named:
        entries = first_job_only(entries, named)
    if parsed.has("f"):
        print_full("Job Id", [(e[0], e[1]) for e in entries], fmt, parsed.last("D") or "|", server)
    elif any(parsed.has(c) for c in "answiruHT1") or parsed.has("G") or parsed.has("M"):
        sys.stdout.write("".join(f"{line}\n" for line in alt_rows(entries, parsed, server)))
    else:
        sys.stdout.write("".join(f"{line}\n" for line in default_rows(entries)))
    status = 0
    for job_id, code in answer["errors"]:
        if code == errors.HISTJOBID:
            hint = "use -x or -H to obtain historical job information"
            common.err(f"qstat: {job_id} Job has finished, {hint}")
        else:
            common.err(f"qstat: {errors.MESSAGES.get(code, code)} {job_id}")
        status = errors.exit_code(code)
    return status


def server_status(parsed: Parsed, home: Home, server: str, fmt: str) -> int:
    answer = client.request({"op": "statserver"}, home)
    if parsed.has("f"):
        print_full(
            "Server", [(answer["name"], answer["attrs"])], fmt, parsed.last("D") or "|", server
        )
        return 0
    tally = answer["counts"]
    print("Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext Status")
    print("---------------- ----- ----- ----- ----- ----- ----- ----- ----- -----------")
    numbers = [
        0,
        answer["total"],
        tally["Q"],
        tally["R"],
        tally["H"],
        tally["W"],
        tally["T"],
        tally["E"],
    ]
    print(
        f"{cut(answer['name'], 16):<16} "
        + " ".join(f"{n:>5}" for n in numbers)
        + f" {'Active':<10}"
    )
    return 0


def queue_status(parsed: Parsed, home: Home, server: str, fmt: str) -> int:
    answer = client.request({"op": "statque", "names": parsed.operands}, home)
    if parsed.has("f"):
        objects = [(q["name"], q["attrs"]) for q in answer["queues"]]
        print_full("Queue", objects, fmt, parsed.last("D") or "|", server)
    elif answer["queues"]:
        print("Queue              Max   Tot Ena Str   Que   Run   Hld   Wat   Trn   Ext Type")
        print("---------------- ----- ----- --- --- ----- ----- ----- ----- ----- ----- ----")
        for queue in answer["queues"]:
            tally = queue["counts"]
            counts = " ".join(f"{tally[k]:>5}" for k in ("Q", "R", "H", "W", "T", "E"))
            kind = "Exe*" if queue["default"] else "Exe "
            print(
                f"{cut(queue['name'], 16):<16} {0:>5} {queue['total']:>5} yes yes {counts} {kind}"
            )
    for name in answer["unknown"]:
        common.err(f"qstat: Unknown queue {name}")
    return errors.exit_code(errors.UNKQUE) if answer["unknown"] else 0


def main(prog: str, argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {PBS_VERSION}")
        return 0
    home = Home.from_env()
    modern = bool(home.load_config().get("json_output", True))
    parsed = getopt(prog, argv, OPTSTRING if modern else OLD_OPTSTRING)
    if parsed.errors:
        common.err("\n".join(parsed.errors))
        sys.stderr.write(USAGE if modern else OLD_USAGE)
        return 2
    fmt = (parsed.last("F") or "").lower()
    alternate = any(parsed.has(c) for c in "ainsru1")
    if (fmt and (not parsed.has("f") or alternate)) or fmt not in ("", "json", "dsv"):
        sys.stderr.write(CONFLICT)
        return 2
    server = common.server_name(home)
    if parsed.has("B"):
        return server_status(parsed, home, server, fmt)
    if parsed.has("Q") or parsed.has("q"):
        return queue_status(parsed, home, server, fmt)
    return job_status(parsed, home, server, fmt)
