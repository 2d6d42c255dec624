"""A small multi-stage pipeline: prepare -> an array of simulations -> a summary.

Run it on the embedded local backend (no cluster needed):

    python examples/pipeline.py

or on any configured site, unchanged:

    python examples/pipeline.py --site test-slurm

Stages are chained with the scheduler's own dependencies (afterok), so once submitted the
pipeline would finish even if this script exited; here it waits, prints what happened, then
syncs the site's accounting into the ledger (a private SQLite file unless --ledger or
$HPCBRIDGE_LEDGER names another) and prints what the pipeline used, read back from it.

The ledger keeps one row per attempt: a job requeued twice ran three times and has three
attempts, so this pipeline's six jobs (prepare, four array tasks, summarize) are six attempts
only when nothing was requeued. A sync reads the cluster's accounting since its last sync less
an overlap, so it reads other users' jobs too, and again ones the ledger already holds
(rewritten unchanged): that count is the sync's, not the pipeline's. A sync that fails says
why, and the script then exits 1.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from hpcbridge import Cluster, JobSpec
from hpcbridge.ledger.schema import Cluster as ClusterRow
from hpcbridge.ledger.schema import JobAttempt
from hpcbridge.ledger.store import Ledger, default_ledger_url
from hpcbridge.ledger.sync import SyncStatus, sources_for, sync

PREPARE = "seq 1 4 > inputs.txt && echo prepared $(wc -l < inputs.txt) inputs"
SIMULATE = """\
n=$(sed -n "${HPCBRIDGE_ARRAY_INDEX}p" inputs.txt)
sleep 1
echo $(( n * n )) > "result-${HPCBRIDGE_ARRAY_INDEX}.txt"
echo "task ${HPCBRIDGE_ARRAY_INDEX}: ${n}^2 = $(( n * n ))"
"""
SUMMARIZE = """\
total=0
for result in result-*.txt; do total=$(( total + $(cat "$result") )); done
echo "sum of squares: $total"
"""


def job_order(job_id: str) -> tuple[int, int]:
    """Array tasks ("12_3" on Slurm, "12[3].server" on PBS) sort after their array."""
    match = re.match(r"(\d+)(?:_(\d+)|\[(\d*)\])?", job_id)
    if match is None:
        return (0, 0)
    task = match.group(2) or match.group(3)
    return int(match.group(1)), int(task) if task else -1


def account_for(
    cluster: Cluster, url: str | None, job_ids: list[str], jobs: int
) -> tuple[bool, list[str]]:
    """Sync the site's accounting into the ledger, then read back what ``job_ids`` (``jobs``
    jobs, array tasks counted one by one) used: whether the sync read everything, and the
    lines to print, with the reason of every source that failed."""
    site = cluster.site
    name = site.cluster_name or site.name
    url = url or os.environ.get("HPCBRIDGE_LEDGER") or default_ledger_url()
    with Ledger.open(url) as ledger:
        result = sync(ledger, name, site.scheduler, sources_for(site, cluster.transport))
        with ledger.transaction(read_only=True) as connection:
            attempts = connection.execute(
                select(
                    JobAttempt.job_id,
                    JobAttempt.array_index,
                    JobAttempt.alloc_cpus,
                    JobAttempt.elapsed_s,
                )
                .join(ClusterRow, JobAttempt.cluster_id == ClusterRow.id)
                .where(ClusterRow.name == name, JobAttempt.job_id.in_(job_ids))
            ).all()
    sources = ", ".join(outcome.source for outcome in result.outcomes)
    lines = [
        f"ledger {url}: sync {result.status}, {result.rows} attempt records of cluster "
        f"{name!r} read from {sources} and upserted (every user's, since the last sync less "
        "an overlap, or ledger.first_sync back on a new ledger)"
    ]
    lines += [
        f"sync of {outcome.source} failed: {outcome.error}"
        for outcome in result.outcomes
        if outcome.error is not None
    ]
    found = {(row.job_id, row.array_index) for row in attempts}
    core_seconds = sum((row.alloc_cpus or 0) * (row.elapsed_s or 0) for row in attempts)
    lines.append(
        f"this pipeline in the ledger: {len(found)} of its {jobs} jobs, in {len(attempts)} "
        f"attempts (one per run: a requeued job has several), {core_seconds} core-seconds"
    )
    return result.status is SyncStatus.OK, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", default="local", help="site name or YAML path")
    parser.add_argument("--workdir", help="where jobs write (default: a new temporary folder)")
    parser.add_argument("--ledger", help="ledger database URL (default: the private SQLite one)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hpcbridge-demo-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)

    def stage(name: str, command: str, **fields: object) -> JobSpec:
        return JobSpec.parse(
            {
                "name": name,
                "command": command,
                "workdir": str(workdir),
                "stdout": f"{name}-%j.out",
                "resources": {"walltime": "5:00"},
                **fields,
            }
        )

    started = time.monotonic()
    with Cluster.from_site(args.site) as cluster:
        prepare = cluster.submit(stage("prepare", PREPARE))
        simulate = cluster.submit(
            stage(
                "simulate",
                SIMULATE,
                array="1-4%2",
                stdout="simulate-%A_%a.out",
                depends_on=["prepare"],
            )
        )
        summarize = cluster.submit(stage("summarize", SUMMARIZE, depends_on=["simulate"]))
        print(
            f"submitted to {cluster.site.name} ({cluster.site.scheduler}): "
            f"prepare={prepare} simulate={simulate} summarize={summarize}"
        )
        finished = cluster.wait([prepare, simulate, summarize], timeout=600)
        everything = cluster.status([prepare, simulate, summarize])
        jobs = sum(job_id != simulate for job_id in everything)  # the array counts as its tasks
        synced, accounted = account_for(cluster, args.ledger, [prepare, simulate, summarize], jobs)

    submitted = min(info.submit_time for info in everything.values() if info.submit_time)
    print(f"\n{'job':<8} {'name':<10} {'state':<10} {'exit':>4} {'started':>8} {'ran':>6}")
    for job_id, info in sorted(everything.items(), key=lambda item: job_order(item[0])):
        started_at = (
            f"+{(info.start_time - submitted).total_seconds():.1f}s" if info.start_time else "-"
        )
        ran = f"{info.elapsed_seconds:.1f}s" if info.elapsed_seconds is not None else "-"
        exit_code = "-" if info.exit_code is None else str(info.exit_code)
        print(
            f"{job_id:<8} {info.name or '':<10} {info.state.value:<10} {exit_code:>4} "
            f"{started_at:>8} {ran:>6}"
        )
    print(f"\npipeline finished in {time.monotonic() - started:.1f}s; outputs in {workdir}")
    summary = next(workdir.glob("summarize-*.out"), None)
    if summary is not None:
        print(summary.read_text().strip())
    print("\n".join(accounted))
    completed = all(info.state.value == "COMPLETED" for info in finished.values())
    return 0 if synced and completed else 1


if __name__ == "__main__":
    raise SystemExit(main())
