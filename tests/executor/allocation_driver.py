"""Run by test_allocation_steps inside a Slurm batch job: calls through Cluster.allocation, and
what each one saw, written as JSON for the test to read.

    python allocation_driver.py SITE OUT CALLS GPUS_PER_CALL FAILING

Call FAILING (-1: none) raises ValueError. With GPUS_PER_CALL, a request for one GPU more
than the allocation has is tried first and its refusal kept. The calls are defined here, in
``__main__``, so cloudpickle sends them to the steps by value.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from allocation_calls import run_calls

from hpcbridge import Cluster
from hpcbridge.errors import SpecError


def seen(index: int, failing: int) -> dict[str, Any]:
    """Which step ran the call, which GPUs it saw, and when it ran."""
    started = time.time()
    time.sleep(1.0)
    step = os.environ["SLURM_STEP_ID"]
    if index == failing:
        raise ValueError(f"call {index} in step {step}")
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {"index": index, "step": step, "gpus": gpus, "start": started, "end": time.time()}


def main(site: str, out: str, calls: int, gpus_per_call: int, failing: int) -> None:
    folder = Path(out).parent / "tasks"
    report: dict[str, Any] = {
        "env": {
            name: os.environ.get(name)
            for name in ("SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES")
        },
    }
    with Cluster.from_site(site) as cluster:
        if gpus_per_call:
            gpus = len(os.environ["SLURM_JOB_GPUS"].split(","))
            try:
                cluster.allocation(root=folder, gpus_per_call=gpus + 1)
            except SpecError as refused:
                report["refused"] = str(refused)
        with cluster.allocation(root=folder, gpus_per_call=gpus_per_call) as pool:
            report["workers"] = pool._max_workers
            report["results"] = run_calls(pool, seen, calls, failing)
    Path(out).write_text(json.dumps(report))


if __name__ == "__main__":
    site, out, calls, gpus_per_call, failing = sys.argv[1:]
    main(site, out, int(calls), int(gpus_per_call), int(failing))
