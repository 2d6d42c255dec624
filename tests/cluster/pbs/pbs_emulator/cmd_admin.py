"""pbs-emulator: the admin side of the emulator (no such command exists in real PBS).

pbs-emulator start | stop | status
pbs-emulator server-down | server-up       clients get "Connection refused" (exit 162)
pbs-emulator hang SECONDS                  every answer is delayed (0: back to normal)
pbs-emulator node-down [NODE] | node-up [NODE]
pbs-emulator node-offline [NODE] | node-online [NODE]
pbs-emulator rerun JOBID...                forced requeue, as a manager's qrerun -W force
pbs-emulator configure KEY=JSON...         merge into config.json and reload
pbs-emulator clear-faults
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pbs_emulator import admin, common
from pbs_emulator.home import Home

USAGE = (__doc__ or "").split("\n\n", 1)[1]


def configure_args(args: list[str]) -> dict[str, object]:
    changes: dict[str, object] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=JSON, got {arg!r}")
        try:
            changes[key] = json.loads(value)
        except ValueError:
            changes[key] = value
    return changes


def main(prog: str, argv: list[str]) -> int:
    home = Home.from_env()
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    node = args[0] if args else None
    actions: dict[str, Callable[[], object]] = {
        "start": lambda: print(admin.start(home)),
        "stop": lambda: admin.stop(home),
        "status": lambda: print(admin.dumps(admin.status(home))),
        "server-down": lambda: admin.set_fault(home, server_down=True),
        "server-up": lambda: admin.set_fault(home, server_down=False),
        "hang": lambda: admin.set_fault(home, hang_seconds=float(args[0])),
        "node-down": lambda: admin.set_node(home, node, down=True),
        "node-up": lambda: admin.set_node(home, node, down=False),
        "node-offline": lambda: admin.set_node(home, node, offline=True),
        "node-online": lambda: admin.set_node(home, node, offline=False),
        "rerun": lambda: common.report("pbs-emulator", admin.force_rerun(home, args)),
        "configure": lambda: admin.configure(home, **configure_args(args)),
        "clear-faults": lambda: admin.set_fault(home, server_down=False, hang_seconds=0),
    }
    if command not in actions:
        common.err(f"usage: {prog} COMMAND\n{USAGE}")
        return 2
    try:
        result = actions[command]()
    except (ValueError, KeyError, IndexError) as exc:
        common.err(f"{prog}: {exc}")
        return 2
    return result if isinstance(result, int) else 0
