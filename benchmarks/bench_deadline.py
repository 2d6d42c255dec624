"""A deadline set or moved, from the call until the account's queued jobs carry their new
level, against the raw scheduler calls it makes, measured in the same run.

    .venv/bin/python benchmarks/bench_deadline.py [--jobs 100] [--rounds 6] [--account physics]

Needs the test cluster (tests/cluster/slurm-up.sh); run it when nothing else uses the
account, as every queued job of it moves. The jobs are submitted held (so they stay queued)
and cancelled at the end. Rounds alternate a deadline two hours away (every job rises to the
highest level) and one two months away (every job goes back), each through
``move_deadline``: a ledger write, one squeue, the ledger's predictions, one scontrol update
per level, one ledger write. Each round is checked with squeue before the next. Issue 14
asks for the change in the queued jobs within 1 s. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from timing import timed

from hpcbridge import Cluster
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.deadlines import move_deadline
from hpcbridge.policy.queue import squeue_queue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--account", default="physics")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, Cluster.from_site("test-slurm") as cluster:
        folder = Path(name)
        spec = {
            "command": "true",
            "account": args.account,
            "hold": True,
            "stdout": "/dev/null",
            "workdir": str(folder),
            "resources": {"walltime": "30:00"},
        }
        jobs = [cluster.submit({**spec, "name": f"dl{index}"}) for index in range(args.jobs)]
        try:
            with Ledger.open(f"sqlite:///{folder / 'ledger.sqlite'}") as ledger:
                return _measure(cluster, ledger, jobs, args)
        finally:
            subprocess.run(["scancel", *jobs], check=False)


def _measure(cluster: Cluster, ledger: Ledger, jobs: list[str], args: argparse.Namespace) -> int:
    levels = cluster.site.priorities.levels
    took, raw, moved = [], [], []
    for round_number in range(args.rounds):
        ahead = timedelta(hours=2) if round_number % 2 == 0 else timedelta(days=60)
        due = datetime.now(UTC) + ahead
        started = time.perf_counter()
        result = move_deadline(cluster, ledger, args.account, due)
        took.append(time.perf_counter() - started)
        changes = result.changes
        moved.append(len(changes))
        wanted = {change.new_level for change in changes}
        assert len(wanted) == 1, wanted
        level = levels[wanted.pop()]
        assert _qos_of(jobs) == {level.qos}, "squeue does not show the new level"
        argv = ["scontrol", "update", f"JobId={','.join(c.job_id for c in changes)}"]
        argv += [f"QOS={level.qos}", f"Nice={level.nice}"]
        raw.append(timed(functools.partial(_run_all, [squeue_queue(args.account), argv])))
    ms = [round(t * 1000) for t in took]
    raw_ms = [round(t * 1000) for t in raw]
    print(f"{args.jobs} queued jobs of {args.account}, {args.rounds} deadline moves")
    print(f"jobs moved:             {moved}")
    print(f"move_deadline, ms:      {ms}")
    print(f"raw squeue+scontrol ms: {raw_ms}")
    print(f"ratio:                  {[round(a / b, 2) for a, b in zip(took, raw, strict=True)]}")
    print(f"median {statistics.median(ms)} ms vs raw {statistics.median(raw_ms)} ms; max {max(ms)}")
    return 0 if max(took) < 1.0 else 1


def _qos_of(jobs: list[str]) -> set[str]:
    listed = subprocess.run(
        ["squeue", "--noheader", f"--jobs={','.join(jobs)}", "--format=%q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.split())


def _run_all(argvs: list[list[str]]) -> None:
    for argv in argvs:
        subprocess.run(argv, check=True, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
