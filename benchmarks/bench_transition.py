"""How long a workflow's stage waits after the stage it depends on ends, through hpcbridge
and through raw ``sbatch --dependency=afterok`` pairs, measured in the same run.

    .venv/bin/python benchmarks/bench_transition.py [--pairs 10]

Needs the test cluster. Each pair is a parent ``true`` and a child ``true`` that waits on
it; the transition is the child's Start minus the parent's End in sacct (whole seconds).
hpcbridge hands the dependency to Slurm (no client-side watcher), so the two should match:
the delay is slurmctld's, the time until its scheduler next looks at the released job.
Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from hpcbridge import Cluster
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.store import StateFileStore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, Cluster.from_site("test-slurm") as cluster:
        folder = Path(name)
        store = StateFileStore(folder / "workflows")
        ours, raw = [], []
        for index in range(args.pairs):
            stage = {"command": "true", "stdout": "/dev/null", "workdir": str(folder)}
            workflow = Workflow.parse(
                {
                    "name": f"hop{index}",
                    "stages": [
                        {**stage, "name": "parent"},
                        {**stage, "name": "child", "depends_on": "parent"},
                    ],
                }
            )
            record = submit_workflow(cluster, workflow, store, site="test-slurm")
            ours.append((record.latest_job("parent") or "", record.latest_job("child") or ""))
            parent = _sbatch(folder)
            raw.append((parent, _sbatch(folder, f"--dependency=afterok:{parent}")))
        hops = _transitions(ours)
        raw_hops = _transitions(raw)
    print(f"{args.pairs} parent -> child pairs")
    print(f"hpcbridge workflow, s:  {hops}")
    print(f"raw sbatch pairs, s:    {raw_hops}")
    print(
        f"median {statistics.median(hops)} s vs raw {statistics.median(raw_hops)} s; "
        f"max {max(hops)} s vs {max(raw_hops)} s"
    )
    return 0


def _sbatch(folder: Path, *flags: str) -> str:
    argv = ["sbatch", "--parsable", "--output=/dev/null", f"--chdir={folder}", *flags]
    return subprocess.run(
        [*argv, "--wrap=true"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _transitions(pairs: list[tuple[str, str]], timeout: float = 600) -> list[int]:
    """Child Start - parent End of each pair, once every child has ended."""
    limit = time.monotonic() + timeout
    jobs = [job for pair in pairs for job in pair]
    while True:
        listed = subprocess.run(
            [
                "sacct",
                "-X",
                "-n",
                "-P",
                f"--jobs={','.join(jobs)}",
                "--format=JobID,State,Start,End",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        ).stdout.splitlines()
        rows = {line.split("|")[0]: line.split("|")[1:] for line in listed}
        if all(rows.get(child, ["PENDING"])[0] == "COMPLETED" for _, child in pairs):
            break
        if time.monotonic() > limit:
            raise SystemExit(f"children not done after {timeout} s")
        time.sleep(1)
    return [
        int(
            (
                datetime.fromisoformat(rows[child][1]) - datetime.fromisoformat(rows[parent][2])
            ).total_seconds()
        )
        for parent, child in pairs
    ]


if __name__ == "__main__":
    sys.exit(main())
