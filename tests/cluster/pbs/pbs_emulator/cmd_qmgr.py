"""qmgr, only as far as the captures use it: ``set server operators|managers =|+=|-= user@host``
and ``list server [operators|managers]`` (multi-qrerun_non-operator_cases.txt).

The lists live in config.json, where the server reads them for every permission check; a
change is a reload, as for every other setting of the emulator.
"""

from __future__ import annotations

import shlex

from pbs_emulator import admin, common, errors
from pbs_emulator.home import Home

LISTS = ("managers", "operators")

SERVER_ERROR = "qmgr: Error ({code}) returned from server"


def main(prog: str, argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "-c":
        common.err(f"usage: {prog} -c 'set server operators += user@host' | 'list server'")
        return 1
    words = shlex.split(argv[1])
    home = Home.from_env()
    if words[:2] == ["list", "server"] and set(words[2:]) <= set(LISTS):
        return list_server(home, words[2:] or list(LISTS))
    if len(words) == 5 and words[:2] == ["set", "server"] and words[2] in LISTS:
        return set_list(home, words[2], words[3], words[4])
    common.err(f"{prog}: the emulator's qmgr knows only set/list server {' and '.join(LISTS)}")
    return 1


def list_server(home: Home, names: list[str]) -> int:
    config = home.load_config()
    print(f"Server {config['server_name']}")
    for name in names:
        if config.get(name):
            print(f"    {name} = {','.join(config[name])}")
    print()
    return 0


def set_list(home: Home, name: str, op: str, value: str) -> int:
    """PBS refuses a non-manager, and ``+=`` of an entry already there (exit 207)."""
    config = home.load_config()
    user = common.user()
    if user != "root" and not common.listed(user, config.get("managers")):
        return fail(name, errors.PERM)
    entries: list[str] = list(config.get(name) or [])
    given = value.split(",")
    if op == "+=":
        if any(entry in entries for entry in given):
            return fail(name, errors.DUPLIST)
        entries += given
    elif op == "-=":
        entries = [entry for entry in entries if entry not in given]
    elif op == "=":
        entries = given
    else:
        common.err(f"qmgr: Illegal operator: {op}")
        return 1
    admin.configure(home, **{name: entries})
    return 0


def fail(name: str, code: int) -> int:
    text = errors.MESSAGES[code]
    common.err(f"qmgr obj= svr=default: {text} {name}")
    common.err(SERVER_ERROR.format(code=code))
    return errors.exit_code(code)
