"""Many short calls inside one Slurm allocation through Cluster.allocation, against the ideal
``tasks * seconds / cpus``, on the test Slurm.

    .venv/bin/python benchmarks/bench_allocation.py [--tasks 1000] [--cpus 16] [--seconds 1]

Needs the test cluster (tests/cluster/slurm-up.sh). Holds an allocation of ``--cpus`` tasks
with ``salloc --no-shell``, runs ``--tasks`` calls of ``time.sleep(--seconds)`` as steps
(``--cpus`` at a time) and prints the wall time from the first step to the last result, the
ideal, and the overhead per call. Issue 17 asks for about 1000/16 s plus a small overhead.
Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import timed

from hpcbridge import Cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    minutes = max(10, int(args.tasks * args.seconds / args.cpus / 60 * 3) + 5)
    argv = ["salloc", f"--ntasks={args.cpus}", "--no-shell", f"--time={minutes}"]
    granted = subprocess.run(argv, capture_output=True, text=True, check=True)
    found = re.search(r"Granted job allocation (\d+)", granted.stderr)
    if not found:
        print(f"salloc: {granted.stderr.strip()}", file=sys.stderr)
        return 1
    job_id = found.group(1)
    os.environ.update(SLURM_JOB_ID=job_id, SLURM_NTASKS=str(args.cpus))
    try:
        with (
            tempfile.TemporaryDirectory(dir=".") as folder,
            Cluster.from_site("test-slurm") as cluster,
            cluster.allocation(root=Path(folder)) as pool,
        ):
            took = timed(lambda: list(pool.map(time.sleep, [args.seconds] * args.tasks)))
    finally:
        subprocess.run(["scancel", job_id], check=False)
    ideal = args.tasks * args.seconds / args.cpus
    print(
        f"{args.tasks} calls of {args.seconds:g} s as steps of a {args.cpus}-task allocation: "
        f"{took:.1f} s; ideal {ideal:.1f} s; overhead {took - ideal:.1f} s "
        f"({(took - ideal) / args.tasks * args.cpus * 1000:.0f} ms per call per slot)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
