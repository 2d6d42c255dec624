"""pbsnodes: ``-a``/``-av`` (text or ``-F json``), ``-aS``/``-aSj`` summaries, ``-l``, and the
admin switches ``-o``/``-r`` (offline / clear offline, managers only)."""

from __future__ import annotations

import sys

from pbs_emulator import PBS_VERSION, admin, client, common, errors, output
from pbs_emulator.cmd_qstat import header
from pbs_emulator.getopt import getopt
from pbs_emulator.home import Home

TYPE_CHECKING = False  # typing costs ~3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

USAGE = """usage:
\tpbsnodes [-o|-r] [-C comment] [-s server] host host ...
\tpbsnodes -l [-s server] [-H|-S[j]] [-F dsv|json] [node ...]
\tpbsnodes -a [-v] [-s server] [-S[j][L]] [-F dsv|json] [node ...]
\tpbsnodes --version
"""


JOBS_HEADER = (
    f"{'mem':>59}{'ncpus':>12}{'nmics':>8}{'ngpus':>8}",
    "vnode           state           njobs   run   susp      f/t        f/t     f/t     f/t   jobs",
    "--------------- --------------- ------ ----- ------ ------------ ------- ------- -------"
    " -------",
)
PLAIN_HEADER = (
    "vnode           state           OS       hardware host            queue        mem     ncpus"
    "   nmics   ngpus  comment",
    "--------------- --------------- -------- -------- --------------- ---------- -------- -------"
    " ------- ------- ---------",
)


def text_block(node: dict[str, Any]) -> str:
    lines = [node["name"]]
    for name, resc, value in node["attrs"]:
        label = name if resc is None else f"{name}.{resc}"
        lines.append(f"     {label} = {value}")
    return "\n".join(lines) + "\n\n"


def summary(nodes: list[dict[str, Any]], with_jobs: bool) -> str:
    lines = list(JOBS_HEADER if with_jobs else PLAIN_HEADER)
    for node in nodes:
        s = node["summary"]
        if with_jobs:
            counts = f"{s['njobs']:>6} {s['run']:>5} {s['susp']:>6}"
            sizes = f"{s['mem']:>12} {s['ncpus']:>7} {s['nmics']:>7} {s['ngpus']:>7}"
            lines.append(
                f"{node['name']:<15} {s['state']:<15} {counts} {sizes} {s['jobs'] or '--'}"
            )
        else:
            total = s["mem"].split("/")[1]
            cpus, gpus = s["ncpus"].split("/")[1], s["ngpus"].split("/")[1]
            lines.append(
                f"{node['name']:<15} {s['state']:<15} {'--':<8} {'--':<8} {node['name']:<15} "
                f"{'--':<10} {total:>8} {cpus:>7} {0:>7} {gpus:>7} --"
            )
    return "\n".join(lines) + "\n"


def set_offline(prog: str, names: list[str], offline: bool, home: Home) -> int:
    if common.user() != "root":
        common.err(f"{prog}: {errors.MESSAGES[errors.PERM]}")
        return errors.exit_code(errors.PERM)
    for name in names:
        admin.set_node(home, name, offline=offline)
    return 0


def main(prog: str, argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        print(f"pbs_version = {PBS_VERSION}")
        return 0
    parsed = getopt(prog, argv, "aC:F:HjlLorSs:v")
    if parsed.errors or not (parsed.operands or parsed.has("a") or parsed.has("l")):
        common.err("\n".join(parsed.errors)) if parsed.errors else None
        sys.stderr.write(USAGE)
        return 1
    home = Home.from_env()
    if parsed.has("o") or parsed.has("r"):
        return set_offline(prog, parsed.operands, parsed.has("o"), home)
    answer = client.request({"op": "statnode", "names": parsed.operands}, home)
    nodes = answer["nodes"]
    fmt = (parsed.last("F") or "").lower()
    if parsed.has("l"):
        for node in nodes:
            if node["summary"]["state"] in ("down", "offline"):
                print(f"{node['name']:<20} {node['summary']['state']}")
    elif parsed.has("S"):
        sys.stdout.write(summary(nodes, parsed.has("j")))
    elif fmt == "json":
        document = header(common.server_name(home))
        document["nodes"] = {node["name"]: node["json"] for node in nodes}
        sys.stdout.write(output.write_json(document))
    else:
        sys.stdout.write("".join(text_block(node) for node in nodes))
    for name in answer["unknown"]:
        common.err(f"{prog}: Unknown node {name}")
    return errors.exit_code(errors.UNKNODE) if answer["unknown"] else 0
