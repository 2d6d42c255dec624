"""The budget decision at submit for an account with 1,000 pending tasks, against the raw
``squeue`` call it reads, measured in the same run.

    .venv/bin/python benchmarks/bench_budget.py [--tasks 1000] [--ledger URL]

Needs the test cluster (tests/cluster/slurm-up.sh). A held array of --tasks tasks is
submitted under a Slurm account of its own (created if missing) and cancelled at the end.
The decision is what hpcbridge adds to the scheduler call: parsing the queue, the ledger
read (the allocation and the account's usage by user, the same whatever the number of
jobs) and the sums; issue 14 asks for under 100 ms. Run by hand; this is not a timed test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from timing import median_of

from hpcbridge import Cluster, JobSpec
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.budget import decide, read_budgets, worst_case
from hpcbridge.policy.queue import parse_squeue_queue, squeue_queue
from hpcbridge.site import SiteConfig

ACCOUNT = "budgetbench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--ledger", help="Ledger URL  [default: a new SQLite file]")
    args = parser.parse_args()
    _account()
    site = SiteConfig.load("test-slurm").model_copy(
        update={
            "budgets": SiteConfig.model_validate(
                {"name": "b", "scheduler": "slurm", "budgets": {"accounts": {ACCOUNT: {}}}}
            ).budgets
        }
    )
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder, Cluster(site) as cluster:
        url = args.ledger or f"sqlite:///{Path(folder) / 'ledger.sqlite'}"
        with Ledger.open(url) as ledger:
            _fill(ledger, now)
            array = cluster.submit(
                {
                    "name": "budget-bench",
                    "command": "true",
                    "account": ACCOUNT,
                    "array": f"1-{args.tasks}",
                    "hold": True,
                    "stdout": "/dev/null",
                    "resources": {"walltime": "10:00"},
                }
            )
            try:
                return _measure(cluster, ledger, site, now, args.tasks)
            finally:
                subprocess.run(["scancel", array], check=False)


def _measure(cluster: Cluster, ledger: Ledger, site: SiteConfig, now: datetime, tasks: int) -> int:
    argv = squeue_queue(ACCOUNT)
    stdout = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    listed = len(parse_squeue_queue(stdout))
    if listed < tasks:
        print(f"squeue listed {listed} tasks, expected {tasks}", file=sys.stderr)
        return 1
    spec = site.prepare(
        JobSpec.parse(
            {
                "name": "new",
                "command": "true",
                "account": ACCOUNT,
                "resources": {"ntasks": 4, "walltime": "30:00"},
            }
        )
    )

    def decision() -> object:
        queue = parse_squeue_queue(stdout)
        budgets = read_budgets(ledger, site, ACCOUNT, queue, user="root", now=now)
        return decide(worst_case(spec, "slurm"), budgets, site.budgets.warn_at)

    raw = median_of(5, lambda: subprocess.run(argv, capture_output=True, check=True))
    ours = median_of(5, decision)
    parse = median_of(5, lambda: parse_squeue_queue(stdout))
    print(
        f"{tasks} pending tasks: raw squeue --account {raw * 1000:.0f} ms; decision "
        f"{ours * 1000:.1f} ms (queue parse {parse * 1000:.1f} ms, ledger and sums "
        f"{(ours - parse) * 1000:.1f} ms), {ours / raw:.2f}x the squeue call"
    )
    print(decision())
    return 0 if ours < 0.1 else 1


def _fill(ledger: Ledger, now: datetime) -> None:
    """An allocation and a month of usage: 2,000 finished attempts of the account."""
    ledger.set_allocation(ACCOUNT, now - timedelta(days=30), now + timedelta(days=60), 1e6)
    records = [
        AttemptRecord(
            job_id=str(10_000 + i),
            attempt=1,
            state=JobState.COMPLETED,
            user="root",
            account=ACCOUNT,
            start=now - timedelta(hours=i % 600 + 2),
            end=now - timedelta(hours=i % 600 + 1),
            elapsed_s=3600,
            alloc_cpus=4,
            alloc_gpus=0,
        )
        for i in range(2000)
    ]
    ledger.upsert_attempts("hpcbridge", "slurm", records, source="bench")


def _account() -> None:
    subprocess.run(["sacctmgr", "-i", "add", "account", ACCOUNT], capture_output=True, check=False)
    subprocess.run(
        ["sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}"],
        capture_output=True,
        check=False,
    )


if __name__ == "__main__":
    sys.exit(main())
