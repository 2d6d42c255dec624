"""Slurm's rules as the local backend applies them: dependencies, singleton, output names.

Kept apart from the runner, which supervises processes, so the rules read as the Slurm
behaviour they copy (each cites the slurmctld function or man page it follows).
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

from hpcbridge.backends.local import store as st

# sbatch(1) "filename pattern": %% %A %a %j %N %u %x, with optional zero-padding width.
_PATTERN = re.compile(r"%(\d*)([%AajNux])")
# What sbatch substitutes for %a in a job that is not an array (NO_VAL).
_NO_ARRAY_INDEX = "4294967294"


def output_paths(meta: st.JobMeta, record: st.Record) -> tuple[Path, Path | None]:
    """stdout and stderr files (stderr None: joined), patterns expanded, under the workdir."""
    index = record["index"]
    default = "hpcbridge-%A_%a.out" if index is not None else "hpcbridge-%j.out"
    values = {
        "A": str(record["job"]),
        "a": _NO_ARRAY_INDEX if index is None else str(index),
        "j": record["id"],
        "N": os.uname().nodename,
        "u": pwd.getpwuid(os.getuid()).pw_name,
        "x": meta["name"],
    }
    workdir = Path(meta["workdir"])
    stdout = workdir / expand_pattern(meta["stdout"] or default, values)
    stderr = workdir / expand_pattern(meta["stderr"], values) if meta["stderr"] else None
    return stdout, stderr


def expand_pattern(pattern: str, values: dict[str, str]) -> str:
    """Replace sbatch's %-codes; ``%3a`` pads the index to three digits."""

    def replace(match: re.Match[str]) -> str:
        width, code = match.groups()
        if code == "%":
            return "%"
        return values[code].zfill(int(width)) if width else values[code]

    return _PATTERN.sub(replace, pattern)


def dependency_verdict(store: st.Store, depends: list[list[str]]) -> str:
    """ "ok", "wait" or "never" for the job's dependencies (all must hold, as with ',').

    The rules are slurmctld's (job_scheduler.c, _test_job_dependency_common): a whole array
    counts as finished when every task has, "ok" means every task COMPLETED, and a job that
    no longer exists lifts the dependency.
    """
    verdicts = {_one_verdict(store, condition, job) for condition, job in depends}
    return next((v for v in ("never", "wait") if v in verdicts), "ok")


def _one_verdict(store: st.Store, condition: str, job: str) -> str:
    if condition == "singleton":
        return "ok"  # decided at start time, under the name lock
    states = [st.effective(member)["state"] for member in store.members(job)]
    if condition == "after":
        return "ok" if st.PENDING not in states else "wait"
    if not all(state in st.TERMINAL for state in states):
        return "wait"
    all_ok = all(state == st.COMPLETED for state in states)
    if condition == "afterok":
        return "ok" if all_ok else "never"
    if condition == "afternotok":
        return "never" if all_ok else "ok"
    return "ok"  # afterany


def singleton_blocked(store: st.Store, record: st.Record) -> bool:
    """slurmctld's _find_singleton_job: a same-named job runs, or one queued earlier waits."""
    mine = (record["job"], record["index"] if record["index"] is not None else -1)
    for job in store.jobs_named(record["name"]):
        for other in store.members(str(job)):
            if other["id"] == record["id"] or other["name"] != record["name"]:
                continue
            state = st.effective(other)["state"]
            key = (other["job"], other["index"] if other["index"] is not None else -1)
            if state == st.RUNNING or (state == st.PENDING and key < mine):
                return True
    return False
