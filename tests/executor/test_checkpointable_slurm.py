"""A checkpointable function on the real Slurm: stopped at its time limit, requeued, resumed.

Slurm's shortest limit is a minute and the warning may come up to 60 s early (sbatch(1),
--signal), so the call has a 2-minute limit, the warning 30 s before it, and 100 s of work:
the warning reaches each run 30-90 s in, so the first run is always stopped and a later one
finishes. Requeued runs are released after a few seconds (slurm_queue.drive_to_the_end).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slow_sum import SlowSum, expected
from slurm_queue import completed_runs, drive_to_the_end

from hpcbridge import Cluster, JobState, SiteConfig
from hpcbridge.executor.pool import ClusterExecutor

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]
STEPS = 100


@pytest.fixture(params=["shared", pytest.param("sftp", marks=pytest.mark.ssh)])
def executor(request: pytest.FixtureRequest, workdir: Path) -> Iterator[ClusterExecutor]:
    """On the test Slurm, with its files here (shared), or over SSH staged by SFTP under the
    site's remote_root, for a client that does not share the cluster's filesystem."""
    shared = request.param == "shared"
    site = SiteConfig.load("test-slurm") if shared else request.getfixturevalue("not_shared_site")
    with (
        Cluster(site) as cluster,
        cluster.executor(
            root=workdir if shared else None,
            resources={"walltime": "2"},
            checkpoint={"signal": "USR1@30"},
        ) as pool,
    ):
        yield pool


def test_a_checkpointable_function_stopped_at_its_limit_resumes_and_returns_the_sum(
    executor: ClusterExecutor,
) -> None:
    started = time.monotonic()
    future = executor.submit(SlowSum(1.0), STEPS)
    job_id: str = getattr(future, "job_id")  # noqa: B009  (a TaskFuture's)
    # A second Cluster watches the job, beside the executor's own poller.
    with Cluster.from_site("test-slurm") as watcher:
        requeued = drive_to_the_end(watcher, job_id, timeout=540)
    total, runs = future.result(timeout=60)
    elapsed = time.monotonic() - started

    assert total == expected(STEPS)
    history = [run.state for run in completed_runs(job_id)]
    assert requeued, "the job was never seen requeued"
    assert JobState.REQUEUED in history[:-1]
    assert history[-1] is JobState.COMPLETED
    # The runs that went on from a checkpoint: at least the one after the time limit. Other
    # tests on the shared node may fail it or preempt the job too (seen: NODE_FAIL, then the
    # time-limit requeue), and a run that ends before any checkpoint starts the next afresh.
    assert 2 <= runs <= len(history)
    print(f"checkpointable function: {runs} runs ({', '.join(history)}), {elapsed:.0f} s")
