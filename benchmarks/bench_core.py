"""Core benchmarks against the raw Slurm commands, measured in the same run.

    .venv/bin/python benchmarks/bench_core.py [--submit 500] [--status 1000]

Needs the test cluster (tests/cluster/slurm-up.sh). Jobs are submitted with a begin time a
day ahead so they stay pending and the cluster's own load does not skew the timings; every
job this creates is cancelled at the end. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from timing import median_of

from hpcbridge import Cluster, JobSpec, LocalTransport, RecordingTransport, SiteConfig
from hpcbridge.backends.slurm import cli

ROOT = Path(__file__).resolve().parent.parent


def pending_spec(name: str) -> JobSpec:
    begin = (datetime.now() + timedelta(days=1)).replace(microsecond=0)
    return JobSpec.parse(
        {"name": name, "command": "true", "begin": begin.isoformat(), "stdout": "/dev/null"}
    )


def bench_submit(cluster: Cluster, count: int, created: list[str]) -> None:
    """Raw and API submissions alternate, so both see the same queue length."""
    spec = pending_spec("bench-submit")
    script = cluster.render(spec)
    raw = api = 0.0
    for _ in range(count):
        started = time.perf_counter()
        done = subprocess.run(
            ["sbatch", "--parsable"], input=script, text=True, capture_output=True, check=True
        )
        raw += time.perf_counter() - started
        created.append(done.stdout.strip())
        started = time.perf_counter()
        created.append(cluster.submit(spec))
        api += time.perf_counter() - started
    print(
        f"submit {count} jobs each way, interleaved: raw sbatch {raw:.2f} s "
        f"({raw / count * 1e3:.1f} ms/job), hpcbridge {api:.2f} s ({api / count * 1e3:.1f} "
        f"ms/job), ratio {api / raw:.2f}x (goal <= 1.1x)"
    )


def bench_status(count: int, created: list[str]) -> None:
    transport = RecordingTransport(LocalTransport())
    with Cluster(SiteConfig.load("test-slurm"), transport=transport) as cluster:
        script = cluster.render(pending_spec("bench-status"))
        ids = created[:count]
        while len(ids) < count:
            done = subprocess.run(
                ["sbatch", "--parsable"], input=script, text=True, capture_output=True, check=True
            )
            ids.append(done.stdout.strip())
            created.append(ids[-1])
        raw_argv = cli.squeue(ids)
        raw = median_of(7, lambda: subprocess.run(raw_argv, capture_output=True, check=True))
        transport.commands.clear()
        infos = cluster.status(ids)
        programs = ", ".join(argv[0] for argv in transport.commands)
        calls = len(transport.commands)
        api = median_of(7, lambda: cluster.status(ids))
    print(
        f"status of {len(infos)} jobs: {calls} scheduler call(s) ({programs}); "
        f"raw squeue {raw * 1e3:.0f} ms, hpcbridge {api * 1e3:.0f} ms, ratio {api / raw:.2f}x "
        f"(goal <= 1.0x; benchmarks/bench_peers.py compares the peers too)"
    )


def bench_help() -> None:
    hpcbridge = str(Path(sys.executable).parent / "hpcbridge")
    bare = median_of(15, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    helped = median_of(
        15, lambda: subprocess.run([hpcbridge, "--help"], capture_output=True, check=True)
    )
    print(
        f"hpcbridge --help: {helped * 1e3:.0f} ms (bare python start {bare * 1e3:.0f} ms; "
        f"goal <= 150 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="hpcbridge core benchmarks")
    parser.add_argument("--submit", type=int, default=500, help="jobs to submit each way")
    parser.add_argument("--status", type=int, default=1000, help="jobs to poll")
    args = parser.parse_args()
    created: list[str] = []
    try:
        with Cluster.from_site("test-slurm") as cluster:
            bench_submit(cluster, args.submit, created)
        bench_status(args.status, created)
        bench_help()
    finally:
        for start in range(0, len(created), 500):
            subprocess.run(["scancel", *created[start : start + 500]], check=False)


if __name__ == "__main__":
    main()
