"""PBS benchmarks on the emulator (tests/cluster/pbs), against raw qstat in the same run.

    .venv/bin/python benchmarks/bench_pbs.py [--jobs 1000]

Prints: the scheduler calls and time of a status poll of N jobs vs the raw qstat call,
the parse time of that qstat text listing, and the accounting-log parse rate. Jobs are submitted
held (qsub -h) so they stay put. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpcbridge import Cluster, LocalTransport, RecordingTransport, SiteConfig
from hpcbridge.backends.pbs import accounting, cli, parse

EMULATOR = Path(__file__).resolve().parent.parent / "tests" / "cluster" / "pbs"
sys.path.insert(0, str(EMULATOR))
sys.path.insert(0, str(EMULATOR.parent.parent))

from pbs_emulator import admin  # noqa: E402
from pbs_emulator.home import Home, short_hostname  # noqa: E402
from pbs_plugin import default_config  # noqa: E402
from timing import median_of  # noqa: E402


def submit_held(count: int) -> list[str]:
    ids = []
    started = time.perf_counter()
    for index in range(count):
        done = subprocess.run(
            ["qsub", "-h", "-N", f"bench{index}"],
            input="true\n",
            text=True,
            capture_output=True,
            check=True,
        )
        ids.append(done.stdout.strip())
    elapsed = time.perf_counter() - started
    print(f"raw qsub: {count} held jobs in {elapsed:.1f} s ({elapsed / count * 1e3:.0f} ms/job)")
    return ids


def bench_status(ids: list[str]) -> None:
    """Raw qstat and hpcbridge polls alternate, so both see the same server load. The raw
    call is the one hpcbridge makes for several ids: the text listing (OpenPBS's -F json
    prints only the first of several ids)."""
    transport = RecordingTransport(LocalTransport())
    raw_argv = cli.qstat(ids, json=False, history=True)
    raw_env = {**os.environ, "TZ": "UTC"}
    with Cluster(SiteConfig.load("test-pbs"), transport=transport) as cluster:
        transport.commands.clear()
        infos = cluster.status(ids)
        programs = [argv[0] for argv in transport.commands]
        raw_times, api_times = [], []
        for _ in range(7):
            raw_times.append(
                median_of(
                    1,
                    lambda: subprocess.run(raw_argv, capture_output=True, env=raw_env, check=True),
                )
            )
            api_times.append(median_of(1, lambda: cluster.status(ids)))
    raw, api = statistics.median(raw_times), statistics.median(api_times)
    stdout = subprocess.run(
        raw_argv, capture_output=True, text=True, env=raw_env, check=True
    ).stdout
    parse_time = median_of(
        5, lambda: [parse.job_info(i, a) for i, a in parse.parse_qstat_text(stdout).items()]
    )
    print(
        f"status of {len(infos)} jobs: {len(programs)} scheduler call(s) ({', '.join(programs)}); "
        f"raw qstat {raw * 1e3:.0f} ms, hpcbridge {api * 1e3:.0f} ms, ratio {api / raw:.2f}x"
    )
    print(
        f"parse of {len(ids)}-job 'qstat -f -x -t' text ({len(stdout) / 1e6:.1f} MB): "
        f"{parse_time * 1e3:.0f} ms"
    )


def bench_accounting(log_dir: Path, records: int) -> None:
    lines = [line for path in sorted(log_dir.glob("*")) for line in path.read_text().splitlines()]
    start = next(line for line in lines if ";S;" in line)
    end = next(line for line in lines if ";E;" in line)
    job_of = start.split(";")[2]
    synthetic = []
    for index in range(records // 2):
        synthetic.append(start.replace(f";{job_of};", f";{index}.bench;"))
        synthetic.append(end.replace(f";{end.split(';')[2]};", f";{index}.bench;"))
    started = time.perf_counter()
    count = sum(1 for _ in accounting.attempts(accounting.read_records(synthetic)))
    elapsed = time.perf_counter() - started
    print(
        f"accounting log: {len(synthetic)} records -> {count} attempts in {elapsed:.2f} s "
        f"({len(synthetic) / elapsed:,.0f} records/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="hpcbridge PBS benchmarks (emulator)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbs-bench-") as folder:
        home = Path(folder)
        (home / "jobhome").mkdir()
        config = default_config(short_hostname())
        config["user_home"] = str(home / "jobhome")
        Home(home).update_config(config)
        os.environ["PBS_EMULATOR_HOME"] = str(home)
        os.chdir(home / "jobhome")  # PBS writes the jobs' .o/.e files to the submit folder
        # The emulator's commands are python3 scripts; a real interpreter first on PATH keeps
        # version-manager shims (~200 ms each) out of every command.
        python_dir = home / "python"
        python_dir.mkdir()
        (python_dir / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
        os.environ["PATH"] = os.pathsep.join(
            [str(EMULATOR / "bin"), str(python_dir), os.environ["PATH"]]
        )
        try:
            one = subprocess.run(
                ["qsub"], input="true\n", text=True, capture_output=True, check=True
            )
            subprocess.run(["qstat"], capture_output=True, check=False)
            Cluster(SiteConfig.load("test-pbs")).wait(one.stdout.strip(), timeout=60)
            ids = submit_held(args.jobs)
            bench_status(ids)
            bench_accounting(home / "server_priv" / "accounting", args.records)
        finally:
            admin.stop(Home(home))


if __name__ == "__main__":
    main()
