"""100 processes each waiting on its own job through Cluster.wait, with and without shared
polling, on the test Slurm in the same run: the squeue and sacct calls the scheduler got, and
how long after its job ended each process saw it.

    .venv/bin/python benchmarks/bench_shared_poll.py [--processes 100] [--interval 10]
                                                     [--modes shared,alone]

Needs the test cluster (tests/cluster/slurm-up.sh). Calls are counted by a shim on PATH: a
folder whose ``squeue`` and ``sacct`` note the time of each call in a log, then exec the real
command. Each mode runs in a process of its own, which forks its waiters before it runs any
command (the transport's watchdog thread must not be forked), submits the jobs as one array
(submit_many), hands each waiter its job, and lets them all go at once. Every job waits for
that moment too, then sleeps 4-13 s and notes when it ended; the node's 16 CPUs run them in
waves for about a minute. ``--interval`` is wait()'s poll_interval; at 10 s (wait's ceiling)
it stays constant, so one squeue per interval shows as squeue calls 10 s apart (less a few ms:
the shim stamps a call when its shell starts, after the snapshot's own clock). Issue 16 asks
for at most one squeue per interval with 100 waiters, each still seeing its job end within
one interval. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from hpcbridge import Cluster, HpcBridgeError, SiteConfig

SITE = "test-slurm"
COUNTED = ("squeue", "sacct")


def make_shim(folder: Path, log: Path) -> Path:
    """A folder to put first on PATH whose squeue and sacct log each call, then run."""
    shim = folder / "shim"
    shim.mkdir()
    for program in COUNTED:
        real = shutil.which(program)
        if real is None:
            sys.exit(
                f"{program} is not on PATH: start the test cluster (tests/cluster/slurm-up.sh)"
            )
        script = shim / program
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$(date +%s.%N) {program}" >> {shlex.quote(str(log))}\n'
            f'exec {shlex.quote(real)} "$@"\n'
        )
        script.chmod(0o755)
    return shim


def waiter(
    site: SiteConfig,
    jobs: Connection,
    start: Barrier,
    results: Queue[tuple[str, str, int | None, float]],
    *,
    shared: bool,
    interval: float,
) -> None:
    """One process: its own Cluster, its own job, Cluster.wait until it ends."""
    job_id: str = jobs.recv()
    cluster = Cluster(site, shared_poll=shared)
    start.wait()
    info = cluster.wait(job_id, poll_interval=interval, timeout=900)[job_id]
    results.put((job_id, info.state.value, info.exit_code, time.time()))


def phase(shared: bool, processes: int, interval: float) -> dict[str, Any]:
    """One mode, from a process that has run no command yet; what it measured."""
    site = SiteConfig.load(SITE)
    with tempfile.TemporaryDirectory(prefix="bench-shared-poll-") as name:
        folder = Path(name)
        folder.chmod(0o777)  # Slurm jobs write their end times here
        log, go, ends = folder / "calls.log", folder / "go", folder / "ends"
        ends.mkdir(mode=0o777)
        os.environ["PATH"] = f"{make_shim(folder, log)}{os.pathsep}{os.environ['PATH']}"
        os.environ["XDG_RUNTIME_DIR"] = str(folder)  # a snapshot of this run alone
        context = multiprocessing.get_context("fork")
        start = context.Barrier(processes + 1)
        results: Queue[tuple[str, str, int | None, float]] = context.Queue()
        pipes = [context.Pipe(duplex=False) for _ in range(processes)]
        children = [
            context.Process(
                target=waiter,
                args=(site, out, start, results),
                kwargs={"shared": shared, "interval": interval},
            )
            for out, _ in pipes
        ]
        for child in children:
            child.start()
        command = (
            f"until [ -e {shlex.quote(str(go))} ]; do sleep 0.2; done; "
            f'sleep "$SECONDS_TO_RUN"; date +%s.%N > {shlex.quote(str(ends))}/"$INDEX"'
        )
        specs = [
            {
                "name": "bench-shared-poll",
                "command": command,
                "workdir": str(folder),
                "stdout": "/dev/null",
                "env": {"SECONDS_TO_RUN": str(4 + index % 10), "INDEX": str(index)},
            }
            for index in range(processes)
        ]
        with Cluster(site) as cluster:
            job_ids = cluster.submit_many(specs)
            try:
                for (_, into), job_id in zip(pipes, job_ids, strict=True):
                    into.send(job_id)
                start.wait(timeout=300)
                started = time.time()
                go.touch()
                seen = [results.get(timeout=900) for _ in range(processes)]
                for child in children:
                    child.join()
            finally:
                _cancel_unfinished(cluster, job_ids)
        index_of = {job_id: index for index, job_id in enumerate(job_ids)}
        latencies = [
            returned - float((ends / str(index_of[job_id])).read_text())
            for job_id, _, _, returned in seen
        ]
        finished = max(returned for *_, returned in seen)
        calls = _calls(log, started, finished)
    squeues = calls["squeue"]
    return {
        "mode": "shared" if shared else "alone",
        "seconds": finished - started,
        "squeue": len(squeues),
        "sacct": len(calls["sacct"]),
        "squeue_gaps": [b - a for a, b in itertools.pairwise(squeues)],
        "all_completed": all(state == "COMPLETED" and code == 0 for _, state, code, _ in seen),
        "latency_median": statistics.median(latencies),
        "latency_max": max(latencies),
        "latency_min": min(latencies),
    }


def _calls(log: Path, since: float, until: float) -> dict[str, list[float]]:
    calls: dict[str, list[float]] = {program: [] for program in COUNTED}
    for line in log.read_text().splitlines() if log.exists() else []:
        stamp, program = line.split()
        if since <= float(stamp) <= until:
            calls[program].append(float(stamp))
    return {program: sorted(stamps) for program, stamps in calls.items()}


def _cancel_unfinished(cluster: Cluster, job_ids: list[str]) -> None:
    try:
        infos = cluster.backend.status(job_ids)
        unfinished = [job for job, info in infos.items() if not info.state.is_terminal]
        if unfinished:
            cluster.cancel(unfinished)
    except HpcBridgeError as exc:
        print(f"could not cancel what is left of {job_ids[0]}...: {exc}", file=sys.stderr)


def report(rows: list[dict[str, Any]], processes: int, interval: float) -> None:
    print(f"{processes} processes, each Cluster.wait(its job, poll_interval={interval:g})")
    print(
        f"{'mode':<7} {'run s':>6} {'squeue':>6} {'s apart: mean':>13} {'least':>6} "
        f"{'sacct':>5}  {'seen after its end, s (min/median/max)':<38} all ended right"
    )
    for row in rows:
        gaps = row["squeue_gaps"]
        mean, least = (f"{statistics.mean(gaps):.2f}", f"{min(gaps):.2f}") if gaps else ("-", "-")
        print(
            f"{row['mode']:<7} {row['seconds']:>6.1f} {row['squeue']:>6} {mean:>13} {least:>6} "
            f"{row['sacct']:>5}  "
            f"{row['latency_min']:.2f} / {row['latency_median']:.2f} / {row['latency_max']:.2f}"
            f"{'':<20} {'yes' if row['all_completed'] else 'NO'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--modes", default="shared,alone", help="shared, alone or both")
    parser.add_argument("--phase", choices=("shared", "alone"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase == "shared", args.processes, args.interval)))
        return
    rows = []
    for mode in args.modes.split(","):
        argv = [sys.executable, __file__, "--phase", mode]
        argv += ["--processes", str(args.processes), "--interval", str(args.interval)]
        answer = subprocess.run(argv, capture_output=True, text=True, check=False)
        if answer.returncode != 0:
            sys.exit(f"the {mode} phase failed:\n{answer.stderr}")
        rows.append(json.loads(answer.stdout.splitlines()[-1]))
    report(rows, args.processes, args.interval)


if __name__ == "__main__":
    main()
