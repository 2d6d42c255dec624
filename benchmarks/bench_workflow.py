"""Workflow benchmarks: validating big DAGs, and submitting one against raw sbatch.

    .venv/bin/python benchmarks/bench_workflow.py [--validate 1000 10000] [--submit 1000]

Validation needs nothing. Submission needs the test cluster (tests/cluster/slurm-up.sh; skip it
with --submit 0): a random DAG whose only root begins a day ahead, so every job stays pending
and the cluster's load does not skew the timings. The same rendered scripts are submitted with
raw ``sbatch --parsable --dependency=afterok:...`` before and after hpcbridge submits the
workflow, so on average both see the same queue length. Every job is cancelled at the end.
Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from datetime import datetime, timedelta
from typing import Any

from timing import median_of, timed

from hpcbridge import Cluster
from hpcbridge.workflows.model import Workflow, stage_dependencies
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.store import StateFileStore


def random_dag(count: int, seed: int = 1) -> dict[str, Any]:
    """Stage i waits on up to three random earlier stages; only stage 0 is a root."""
    chance = random.Random(seed)
    begin = (datetime.now() + timedelta(days=1)).replace(microsecond=0).isoformat()
    stages: list[dict[str, Any]] = [
        {"name": "s0", "command": "true", "begin": begin, "stdout": "/dev/null"}
    ]
    for index in range(1, count):
        parents = chance.sample(range(index), min(index, chance.randint(1, 3)))
        depends = [f"{chance.choice(['afterok', 'afterany'])}:s{p}" for p in parents]
        stages.append(
            {"name": f"s{index}", "command": "true", "depends_on": depends, "stdout": "/dev/null"}
        )
    return {"name": "bench", "stages": stages}


def bench_validate(count: int) -> None:
    data = random_dag(count)
    seconds = median_of(3, lambda: Workflow.parse(data).order())
    print(
        f"validate + order a {count}-stage random DAG: {seconds:.3f} s "
        f"({seconds / count * 1e6:.0f} us/stage; goal < 1 s for 10k)"
    )


def raw_submit(scripts: dict[str, str], flow: Workflow, created: list[str]) -> float:
    """sbatch each stage in the workflow's order with its --dependency on the command line."""
    ids: dict[str, str] = {}

    def submit_all() -> None:
        for name in flow.order():
            groups: dict[str, list[str]] = {}
            for parent, condition in stage_dependencies(flow.stage(name)):
                groups.setdefault(condition, []).append(ids[parent])
            argv = ["sbatch", "--parsable"]
            if groups:
                expression = ",".join(":".join([c, *jobs]) for c, jobs in groups.items())
                argv += [f"--dependency={expression}", "--kill-on-invalid-dep=yes"]
            done = subprocess.run(
                argv, input=scripts[name], text=True, capture_output=True, check=True
            )
            ids[name] = done.stdout.strip().split(";")[0]
            created.append(ids[name])

    return timed(submit_all)


def bench_submit(count: int, created: list[str]) -> None:
    flow = Workflow.parse(random_dag(count))
    edges = sum(len(stage.depends_on) for stage in flow.stages)
    with Cluster.from_site("test-slurm") as cluster, tempfile.TemporaryDirectory() as state:
        scripts = {
            stage.name: cluster.render(stage.model_copy(update={"depends_on": []}))
            for stage in flow.stages
        }
        before = raw_submit(scripts, flow, created)
        started = time.perf_counter()
        record = submit_workflow(cluster, flow, StateFileStore(state))
        api = time.perf_counter() - started
        created.extend(s.job_id for jobs in record.jobs.values() for s in jobs)
        after = raw_submit(scripts, flow, created)
    raw = (before + after) / 2
    print(
        f"submit a {count}-stage DAG ({edges} dependencies): raw sbatch {before:.2f} s before "
        f"and {after:.2f} s after, hpcbridge {api:.2f} s ({api / count * 1e3:.1f} ms/stage, "
        f"state file included), ratio {api / raw:.2f}x (goal <= 1.2x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="hpcbridge workflow benchmarks")
    parser.add_argument("--validate", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--submit", type=int, default=1000, help="stages to submit (0: skip)")
    args = parser.parse_args()
    for count in args.validate:
        bench_validate(count)
    created: list[str] = []
    try:
        if args.submit:
            bench_submit(args.submit, created)
    finally:
        for start in range(0, len(created), 500):
            subprocess.run(["scancel", *created[start : start + 500]], check=False)


if __name__ == "__main__":
    main()
