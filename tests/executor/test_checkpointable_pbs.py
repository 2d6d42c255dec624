"""A checkpointable function on the PBS emulator: the wrapper's own timer warns each run 8 s
in (20 s of walltime, the warning 12 s before it); the work, 20 s, needs three runs.

Jobs are submitted as the emulator's plain user. As an operator it may qrerun its job; as a
plain user it may not, and the wrapper submits the job again to go on once it has ended (exit
75): the executor's future follows the call into that job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pbs_plugin import PbsEmulator
from slow_sum import SlowSum, expected

from hpcbridge import Cluster, JobState, SiteConfig
from hpcbridge.executor.pool import ClusterExecutor
from hpcbridge.jobs.checkpoint import CONTINUED_STATUS

pytestmark = [pytest.mark.pbs, pytest.mark.timeout(180)]
STEPS = 100


@pytest.fixture(params=["operator", "plain user"])
def cluster(
    request: pytest.FixtureRequest,
    pbs_emulator: PbsEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    monkeypatch.chdir(tmp_path)  # PBS writes its .o files where the job was submitted
    pbs_emulator.configure(operators=["hpcuser"] if request.param == "operator" else [])
    site = SiteConfig.load("test-pbs")
    with Cluster(site.model_copy(update={"partitions": {}})) as pbs:
        yield pbs


@pytest.fixture
def executor(cluster: Cluster, tmp_path: Path) -> Iterator[ClusterExecutor]:
    with cluster.executor(
        root=tmp_path / "tasks", resources={"walltime": "0:20"}, checkpoint={"signal": "USR1@12"}
    ) as pool:
        yield pool


def test_a_checkpointable_function_goes_on_after_its_limit_and_returns_the_sum(
    request: pytest.FixtureRequest, cluster: Cluster, executor: ClusterExecutor
) -> None:
    started = time.monotonic()
    future = executor.submit(SlowSum(0.2), STEPS)
    first: str = getattr(future, "job_id")  # noqa: B009  (a TaskFuture's)
    total, runs = future.result(timeout=150)
    elapsed = time.monotonic() - started

    assert total == expected(STEPS)
    last: str = getattr(future, "job_id")  # noqa: B009
    infos = cluster.status([first, last])
    assert infos[last].state is JobState.COMPLETED
    if request.node.callspec.params["cluster"] == "operator":
        assert last == first
        assert runs == infos[last].restarts + 1 >= 2
    else:  # each run a job of its own, each but the last ending "continued"
        assert last != first
        assert infos[first].exit_code == CONTINUED_STATUS
        assert runs >= 2
    print(f"checkpointable function on PBS: {runs} runs, {elapsed:.0f} s")
