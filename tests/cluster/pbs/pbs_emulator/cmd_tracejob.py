"""tracejob: a job's lines from the server, scheduler and MoM logs and the accounting file,
merged by time, in tracejob's layout (``MM/DD/YYYY HH:MM:SS  S    message``).

Like the real one it reads the log files directly, so it works while the server is down.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

from pbs_emulator import common, ids
from pbs_emulator.getopt import getopt
from pbs_emulator.home import Home

SOURCES = (("server_logs", "S"), ("sched_logs", "L"), ("mom_logs", "M"))
USAGE = "usage: tracejob [-a|s|l|m|v] [-w size] [-p path] [-n days] [-f filter] job_identifier...\n"


def day_files(folder: Path, days: int) -> list[Path]:
    today = datetime.date.today()
    names = [
        (today - datetime.timedelta(days=d)).strftime("%Y%m%d") for d in range(days - 1, -1, -1)
    ]
    return [folder / name for name in names if (folder / name).exists()]


def collect(home: Home, job_id: str, days: int) -> list[tuple[float, str, str]]:
    """(time, source letter, message) of every line about `job_id`."""
    found: list[tuple[float, str, str]] = []
    for folder, letter in SOURCES:
        for path in day_files(home.root / folder, days):
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split(";", 5)
                if len(parts) == 6 and parts[4] == job_id:
                    found.append((stamp(parts[0]), letter, parts[5]))
    for path in day_files(home.accounting_dir, days):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(";", 3)
            if len(parts) == 4 and parts[2] == job_id:
                found.append((stamp(parts[0]), "A", parts[3]))
    found.sort(key=lambda item: item[0])
    return found


def stamp(text: str) -> float:
    try:
        return time.mktime(time.strptime(text, "%m/%d/%Y %H:%M:%S"))
    except ValueError:
        return 0.0


def main(prog: str, argv: list[str]) -> int:
    parsed = getopt(prog, argv, "ac:f:lmn:p:svw:z")
    days = parsed.last("n") or "1"
    if parsed.errors or not parsed.operands or not days.isdigit():
        common.err("\n".join(parsed.errors)) if parsed.errors else None
        common.err(USAGE.rstrip())
        return 1
    home = Home.from_env()
    server = common.server_name(home)
    status = 0
    for operand in parsed.operands:
        parsed_id = ids.parse(operand)
        job_id = parsed_id.full(server) if parsed_id else operand
        lines = collect(home, job_id, max(1, int(days)))
        print(f"\nJob: {job_id}\n")
        if not lines:
            common.err(
                f"Couldn't find Job Id {job_id} in logs of past {days} day"
                + ("s" if days != "1" else "")
            )
            status = 1
        for when, letter, message in lines:
            print(
                f"{time.strftime('%m/%d/%Y %H:%M:%S', time.localtime(when))}  {letter}    {message}"
            )
    return status
