"""Run by test_allocation_pbs inside a PBS job: calls through Cluster.allocation, and what
each one saw, written as JSON for the test to read.

    python pbs_allocation_driver.py OUT CALLS FAILING

Call FAILING raises ValueError. The calls are defined here, in ``__main__``, so cloudpickle
sends them to the worker processes by value.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from allocation_calls import run_calls

from hpcbridge import Cluster, SiteConfig


def seen(index: int, failing: int) -> dict[str, Any]:
    """Which process ran the call, in which job, and when."""
    started = time.time()
    time.sleep(1.0)
    if index == failing:
        raise ValueError(f"call {index} failed on purpose")
    job = os.environ.get("PBS_JOBID")
    return {"index": index, "pid": os.getpid(), "job": job, "start": started, "end": time.time()}


def main(out: str, calls: int, failing: int) -> None:
    report: dict[str, Any] = {"job": os.environ["PBS_JOBID"]}
    with (
        Cluster(SiteConfig.load("test-pbs")) as cluster,
        cluster.allocation(root=Path(out).parent / "tasks") as pool,
    ):
        report["workers"] = pool._max_workers
        report["results"] = run_calls(pool, seen, calls, failing)
    Path(out).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
