"""Entry point of every command: ``main("qsub", argv)`` -> exit status.

Only the module of the command being run is imported: every command is a new process, and
its start-up time is most of what a client pays per call.
"""

from __future__ import annotations

import importlib
import os
import sys

from pbs_emulator import client, common, errors
from pbs_emulator.home import Home, HomeError

MODULES = {
    "qsub": "cmd_qsub",
    "qstat": "cmd_qstat",
    "pbsnodes": "cmd_nodes",
    "tracejob": "cmd_tracejob",
    "pbs-emulator": "cmd_admin",
    "qmgr": "cmd_qmgr",
    **dict.fromkeys(("qdel", "qhold", "qrls", "qrerun", "qsig", "qalter"), "cmd_jobops"),
}


def main(prog: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(f"pbs_emulator.{MODULES[prog]}")
        status: int = module.main(prog, argv)
        return status
    except HomeError as exc:
        common.err(f"{prog}: {exc}")
        return 1
    except client.ServerUnavailable:
        return common.cannot_connect(prog, Home.from_env())
    except client.ConnectionLost:
        common.err(f"{prog}: {errors.MESSAGES[errors.PROTOCOL]}")
        return errors.exit_code(errors.PROTOCOL)
    except BrokenPipeError:
        return 141
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """For the bin/ wrappers: the command is the name the wrapper was called by."""
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
