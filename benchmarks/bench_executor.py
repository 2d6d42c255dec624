"""Python calls through Cluster.executor against raw ``sbatch --wrap`` jobs writing files, on
the test Slurm, in the same run.

    .venv/bin/python benchmarks/bench_executor.py [--items 200] [--latency 3]

Needs the test cluster (tests/cluster/slurm-up.sh). Two measures, both wall time from the
first submission until every result is read back here:

- a map: ``executor.map(pow, ...)`` over ``--items`` inputs (one job array: one sbatch)
  against ``--items`` calls of ``sbatch --wrap "python -c 'print(pow(3, i))' > out-i"`` (the
  same interpreter), their files waited for by polling the folder as the executor does;
- one call's round trip: ``executor.submit(pow, 2, 10).result()`` against one ``sbatch
  --wrap`` and its file (median of ``--latency`` rounds).

submitit is not compared: it is not installed here. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import timed

from hpcbridge import Cluster

POLL_S = 0.25


def raw_round_trip(folder: Path, items: int) -> tuple[float, float]:
    """Seconds to submit ``items`` sbatch --wrap jobs, and until all their files are read."""
    started = time.perf_counter()
    job_ids = []
    for index in range(items):
        code = shlex.quote(f"print(pow(3, {index}))")
        out = f"out-{index}"
        wrap = f"{shlex.quote(sys.executable)} -c {code} > {out}.tmp && mv {out}.tmp {out}"
        argv = ["sbatch", "--parsable", "--output=/dev/null", f"--chdir={folder}", "--wrap", wrap]
        job_ids.append(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    submitted = time.perf_counter() - started
    files = [folder / f"out-{index}" for index in range(items)]
    while not all(path.exists() for path in files):
        time.sleep(POLL_S)
    values = [int(path.read_text()) for path in files]
    assert values == [3**index for index in range(items)]
    return submitted, time.perf_counter() - started


def executor_map(cluster: Cluster, folder: Path, items: int) -> tuple[float, float]:
    """Seconds for map to submit, and until every result is back."""
    with cluster.executor(root=folder) as pool:
        started = time.perf_counter()
        results = pool.map(pow, [3] * items, range(items))
        submitted = time.perf_counter() - started
        assert list(results) == [3**index for index in range(items)]
        return submitted, time.perf_counter() - started


def latencies(cluster: Cluster, folder: Path, rounds: int) -> tuple[float, float]:
    """Median seconds for one call's round trip: the executor's, and a raw sbatch's."""
    mine, raw = [], []
    with cluster.executor(root=folder / "one") as pool:
        for number in range(rounds):
            mine.append(timed(lambda: pool.submit(pow, 2, 10).result()))
            own = folder / f"raw-{number}"
            own.mkdir()
            raw.append(raw_round_trip(own, 1)[1])
    return statistics.median(mine), statistics.median(raw)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=int, default=3, help="rounds of one call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as name, Cluster.from_site("test-slurm") as cluster:
        folder = Path(name).resolve()
        (folder / "raw").mkdir()
        raw_submit, raw_total = raw_round_trip(folder / "raw", args.items)
        map_submit, map_total = executor_map(cluster, folder / "map", args.items)
        one_mine, one_raw = latencies(cluster, folder, args.latency)
    print(
        f"{args.items} items: executor.map {map_total:.2f} s (submitted in "
        f"{map_submit * 1000:.0f} ms, one sbatch); {args.items} x sbatch --wrap + files "
        f"{raw_total:.2f} s (submitted in {raw_submit:.2f} s); ratio {raw_total / map_total:.1f}x"
    )
    print(
        f"one call, median of {args.latency}: executor {one_mine:.2f} s; sbatch --wrap + file "
        f"{one_raw:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
