"""Python calls through Cluster.executor against raw ``sbatch --wrap`` jobs writing files, on
the test Slurm, in the same run.

    .venv/bin/python benchmarks/bench_executor.py [--items 200] [--latency 3] [--ssh]

Needs the test cluster (tests/cluster/slurm-up.sh). Two measures, both wall time from the
first submission until every result is read back here:

- a map: ``executor.map(pow, ...)`` over ``--items`` inputs (one job array: one sbatch)
  against ``--items`` calls of ``sbatch --wrap "python -c 'print(pow(3, i))' > out-i"`` (the
  same interpreter), their files waited for by polling the folder as the executor does;
- one call's round trip: ``executor.submit(pow, 2, 10).result()`` against one ``sbatch
  --wrap`` and its file (median of ``--latency`` rounds).

With ``--ssh`` (needs the loopback sshd too, tests/cluster/sshd-up.sh) it compares instead
the executor over SSH on a shared filesystem (test-slurm-ssh) with the same site told the
filesystem is not shared, so the files are staged over SFTP under a remote_root: one call's
round trip (median of ``--latency`` rounds, the two alternating), a map over ``--items``, and
what one poll costs to find which of ``--items`` pending folders have a result: the one
listing ``finished`` makes, against a ``stat`` per folder.

submitit is not compared: it is not installed here. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

from timing import median_of, timed

from hpcbridge import Cluster, SiteConfig
from hpcbridge.executor.task_files import SftpTaskFiles
from hpcbridge.transports.ssh import SshTransport

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


def executor_map(cluster: Cluster, folder: Path | None, items: int) -> tuple[float, float]:
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


def not_shared(remote_root: str) -> SiteConfig:
    """test-slurm-ssh for a client that does not share the cluster's filesystem."""
    site = SiteConfig.load("test-slurm-ssh")
    transport = {**site.transport.model_dump(), "shared_filesystem": False}
    transport["remote_root"] = remote_root
    return SiteConfig.model_validate({**site.model_dump(), "transport": transport})


def poll_costs(transport: SshTransport, remote_root: str, items: int) -> tuple[float, float]:
    """Seconds of one poll over ``items`` pending folders (none changed since the last poll):
    finished's one listing, and a stat of each folder's result file instead."""
    files = SftpTaskFiles(transport)
    folders = [PurePosixPath(remote_root, "poll", str(index)) for index in range(items)]
    for folder in folders:
        files.put_call(folder, b"")
    files.finished(folders)  # the first looks stat every folder, as each is new, until
    time.sleep(1.1)  # a look a second later has seen nothing can hide behind their times
    files.finished(folders)
    listing = median_of(5, lambda: files.finished(folders))
    stats = median_of(5, lambda: [files.has_result(folder) for folder in folders])
    return listing, stats


def ssh_comparison(items: int, rounds: int) -> None:
    """The executor over SSH on a shared filesystem against SFTP staging."""
    remote_root = f"/tmp/hpcbridge-bench-sftp-{os.getpid()}"
    with (
        tempfile.TemporaryDirectory(dir=".") as name,
        Cluster.from_site("test-slurm-ssh") as shared,
        Cluster(not_shared(remote_root)) as staged,
    ):
        folder = Path(name).resolve()
        try:
            times: dict[str, list[float]] = {"shared": [], "sftp": []}
            with shared.executor(root=folder) as on_shared, staged.executor() as on_sftp:
                for _ in range(rounds):
                    times["shared"].append(timed(lambda: on_shared.submit(pow, 2, 10).result()))
                    times["sftp"].append(timed(lambda: on_sftp.submit(pow, 2, 10).result()))
            maps = {
                "shared": executor_map(shared, folder / "map", items)[1],
                "sftp": executor_map(staged, None, items)[1],
            }
            assert isinstance(staged.transport, SshTransport)
            listing, stats = poll_costs(staged.transport, remote_root, items)
        finally:
            staged.transport.run(["rm", "-rf", "--", remote_root])
    one = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"one call over SSH, median of {rounds}: shared filesystem {one['shared']:.2f} s, "
        f"SFTP staging {one['sftp']:.2f} s; ratio {one['sftp'] / one['shared']:.2f}x"
    )
    print(
        f"{items} items over SSH: executor.map shared {maps['shared']:.2f} s, SFTP staging "
        f"{maps['sftp']:.2f} s; ratio {maps['sftp'] / maps['shared']:.2f}x"
    )
    print(
        f"one poll of {items} pending folders over SFTP: one listing {listing * 1000:.1f} ms, "
        f"a stat each {stats * 1000:.1f} ms; ratio {stats / listing:.0f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=int, default=3, help="rounds of one call")
    parser.add_argument("--ssh", action="store_true", help="shared filesystem against SFTP")
    args = parser.parse_args()
    if args.ssh:
        ssh_comparison(args.items, args.latency)
        return 0
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
