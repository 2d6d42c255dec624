"""A 1,000-job parameter sweep through Cluster.submit_many against a loop of single
Cluster.submit calls, on the test Slurm, in the same run.

    .venv/bin/python benchmarks/bench_sweep.py [--jobs 1000] [--singles 1000] [--rounds 1]
                                               [--max-array-size N]

Needs the test cluster (tests/cluster/slurm-up.sh). Every job has its own parameter (an
environment variable its command reads) and is submitted held, so nothing runs; all are
cancelled at the end of each round. ``--singles N`` below ``--jobs`` times N single submits
and extrapolates the loop to ``--jobs`` (said in the output). submit_many is timed on a fresh
Cluster, so its one ``scontrol show config`` (MaxArraySize, cached per Cluster) is counted
and timed too; ``--max-array-size`` below MaxArraySize shows the split into several arrays
(one sbatch each). Issue 16 asks for >= 50x and <= ceil(jobs / MaxArraySize) sbatch calls. Run by
hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import uuid
from pathlib import Path

from timing import timed

from hpcbridge import Cluster, JobSpec, LocalTransport, RecordingTransport, SiteConfig
from hpcbridge.cluster import ArrayBackend


def sweep(name: str, workdir: Path, count: int) -> list[JobSpec]:
    """``count`` held jobs, each with its own ALPHA."""
    return [
        JobSpec.parse(
            {
                "name": name,
                "command": './simulate --alpha "$ALPHA"',
                "workdir": str(workdir),
                "stdout": "/dev/null",
                "hold": True,
                "env": {"ALPHA": f"{index / 1000:.3f}"},
            }
        )
        for index in range(count)
    ]


def one_round(
    site: SiteConfig, jobs: int, singles: int, max_array_size: int | None
) -> dict[str, float]:
    name = f"bench-sweep-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder, Cluster(site) as cleanup:
        specs = sweep(name, Path(folder), jobs)
        submitted: list[str] = []
        try:
            with Cluster(site) as looping:
                loop_s = timed(lambda: submitted.extend(looping.submit(s) for s in specs[:singles]))
            recording = RecordingTransport(LocalTransport())
            with Cluster(site, transport=recording) as packing:
                packed: list[str] = []
                many_s = timed(
                    lambda: packed.extend(packing.submit_many(specs, max_array_size=max_array_size))
                )
                submitted.extend(sorted({job_id.partition("_")[0] for job_id in packed}))
        finally:
            if submitted:
                cleanup.cancel(submitted)
        assert isinstance(cleanup.backend, ArrayBackend)
        site_size = cleanup.backend.max_array_size()  # MaxArraySize, as submit_many read it
        max_size = min(size for size in (site_size, max_array_size) if size is not None)
    loop_full = loop_s * jobs / singles
    return {
        "loop_s": loop_full,
        "many_s": many_s,
        "ratio": loop_full / many_s,
        "sbatch": recording.count("sbatch"),
        "scontrol": recording.count("scontrol"),
        "max_size": float(max_size or 0),
        "distinct_ids": len(set(packed)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=None, help="default: --jobs")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-array-size", type=int, default=None, help="below MaxArraySize")
    args = parser.parse_args()
    singles = min(args.singles or args.jobs, args.jobs)
    site = SiteConfig.load("test-slurm")
    worst_ratio = math.inf
    for number in range(1, args.rounds + 1):
        result = one_round(site, args.jobs, singles, args.max_array_size)
        worst_ratio = min(worst_ratio, result["ratio"])
        bound = math.ceil(args.jobs / result["max_size"]) if result["max_size"] else 1
        loop_note = "" if singles == args.jobs else f" (extrapolated from {singles})"
        print(
            f"round {number}: {args.jobs} jobs; loop of single submits {result['loop_s']:.2f} s"
            f"{loop_note}; submit_many {result['many_s'] * 1000:.0f} ms; ratio "
            f"{result['ratio']:.0f}x; sbatch calls {result['sbatch']:.0f} (bound "
            f"ceil({args.jobs}/array size {result['max_size']:.0f}) = {bound}), plus "
            f"{result['scontrol']:.0f} scontrol show config; {result['distinct_ids']:.0f} "
            "distinct ids"
        )
    return 0 if worst_ratio >= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
