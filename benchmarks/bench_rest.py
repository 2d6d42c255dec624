"""The REST driver against the CLI driver and the raw calls under each, in one run.

    .venv/bin/python benchmarks/bench_rest.py [--submit 200] [--status 1000] [--rounds 9]

Needs the test cluster and its slurmrestd (tests/cluster/slurm-up.sh). Submissions
alternate between raw ``sbatch``, the CLI driver, a raw POST to slurmrestd and the REST
driver, so all see the same queue; status rounds alternate the same way over ``--status``
held jobs. Every job made here is cancelled at the end. Run by hand; not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Callable

import httpx
from timing import timed

from hpcbridge import Cluster, JobSpec, SiteConfig
from hpcbridge.backends.slurm import rest_api

URL = "http://127.0.0.1:6820"


def token_headers() -> dict[str, str]:
    made = subprocess.run(["scontrol", "token"], capture_output=True, text=True, check=True)
    token = made.stdout.strip().partition("SLURM_JWT=")[2]
    user, _ = rest_api.token_claims(token)
    return {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}


def report(title: str, times: dict[str, list[float]], base_name: str) -> None:
    """Each way's median, and its ratio to the raw command's."""
    base = statistics.median(times[base_name])
    print(title)
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:13} {median * 1e3:6.1f} ms  {median / base:5.2f}x {base_name}")


def held_spec(name: str) -> JobSpec:
    return JobSpec.parse({"name": name, "command": "true", "hold": True, "stdout": "/dev/null"})


def bench_submit(cli: Cluster, rest: Cluster, http: httpx.Client, count: int) -> list[str]:
    """One submission of each kind per round; per-job medians."""
    spec = held_spec("bench-rest-submit")
    script = cli.render(spec)
    body = rest_api.job_description(script, environment={"PATH": "/usr/bin:/bin"}, cwd="/tmp")
    created: list[str] = []
    times: dict[str, list[float]] = {
        "raw sbatch": [],
        "CLI driver": [],
        "raw POST": [],
        "REST driver": [],
    }

    def sbatch() -> None:
        done = subprocess.run(
            ["sbatch", "--parsable"], input=script, text=True, capture_output=True, check=True
        )
        created.append(done.stdout.strip())

    def post() -> None:
        answer = http.post(rest_api.SUBMIT, json=body)
        created.append(str(answer.raise_for_status().json()["job_id"]))

    actions: dict[str, Callable[[], object]] = {
        "raw sbatch": sbatch,
        "CLI driver": lambda: created.append(cli.submit(spec)),
        "raw POST": post,
        "REST driver": lambda: created.append(rest.submit(spec)),
    }
    for _ in range(count):
        for name, action in actions.items():
            times[name].append(timed(action))
    report(f"one submit, median of {count} interleaved rounds:", times, "raw sbatch")
    return created


def bench_status(
    cli: Cluster, rest: Cluster, http: httpx.Client, ids: list[str], rounds: int
) -> None:
    """The status of every id, each way, interleaved rounds."""
    squeue = [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        f"--jobs={','.join(ids)}",
        "--format=%i|%T|%r",
    ]
    actions: dict[str, Callable[[], object]] = {
        "raw squeue": lambda: subprocess.run(squeue, capture_output=True, check=True),
        "CLI driver": lambda: cli.backend.status(ids),
        "raw GET /jobs": lambda: http.get(rest_api.JOBS).raise_for_status().json(),
        "REST driver": lambda: rest.backend.status(ids),
    }
    for action in actions.values():  # a first call of each, untimed
        action()
    assert len(cli.backend.status(ids)) == len(rest.backend.status(ids)) == len(ids)
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            times[name].append(timed(action))
    report(
        f"status of {len(ids)} held jobs, median of {rounds} interleaved rounds:",
        times,
        "raw squeue",
    )
    in_memory = len(http.get(rest_api.JOBS).json()["jobs"])
    print(f"  (GET /jobs returns all {in_memory} jobs slurmctld holds; squeue only these)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submit", type=int, default=200)
    parser.add_argument("--status", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    created: list[str] = []
    with (
        Cluster(SiteConfig.load("test-slurm")) as cli,
        Cluster(SiteConfig.load("test-slurm-rest")) as rest,
        httpx.Client(base_url=URL, headers=token_headers(), timeout=60) as http,
    ):
        try:
            created += bench_submit(cli, rest, http, args.submit)
            started = time.perf_counter()
            spec = held_spec("bench-rest-status")
            ids = [cli.submit(spec) for _ in range(args.status)]
            created += ids
            print(f"(submitted {len(ids)} held jobs in {time.perf_counter() - started:.1f} s)")
            bench_status(cli, rest, http, ids, args.rounds)
        finally:
            for start in range(0, len(created), 500):
                subprocess.run(["scancel", *created[start : start + 500]], check=False)


if __name__ == "__main__":
    main()
