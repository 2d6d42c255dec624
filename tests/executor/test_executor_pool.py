"""The executor's concurrent.futures semantics on the local backend: one poller thread and one
status call per poll for all pending futures, shutdown, and map's timeout and early exit."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

import cloudpickle
import pytest

from hpcbridge import Cluster, JobInfo, JobSpec, JobState, SchedulerUnavailable
from hpcbridge.executor.pool import ClusterExecutor

pytestmark = pytest.mark.timeout(120)
cloudpickle.register_pickle_by_value(sys.modules[__name__])
TIMEOUT_S = 60


def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def returns_when(gate: str, value: float) -> float:
    """Runs until the file ``gate`` exists: a job that ends when the test says, not on a timer
    that a loaded machine could outrun."""
    while not Path(gate).exists():
        time.sleep(0.05)
    return value


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.local(state_dir=tmp_path / "state") as local:
        yield local


@pytest.fixture
def executor(cluster: Cluster, tmp_path: Path) -> Iterator[ClusterExecutor]:
    with cluster.executor(root=tmp_path / "tasks") as pool:
        yield pool


def pollers() -> int:
    return sum(thread.name == "hpcbridge-executor-poller" for thread in threading.enumerate())


def test_one_thread_and_one_status_call_per_poll_for_every_pending_future(
    cluster: Cluster, executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked: list[set[str]] = []
    status: Callable[[Sequence[str]], dict[str, JobInfo]] = cluster.backend.status

    def recorded(job_ids: Sequence[str]) -> dict[str, JobInfo]:
        asked.append(set(job_ids))
        return status(job_ids)

    monkeypatch.setattr(cluster.backend, "status", recorded)
    gate = tmp_path / "gate"
    before = pollers()
    futures = [executor.submit(returns_when, str(gate), index / 10) for index in range(6)]
    assert pollers() - before == 1
    # Nothing ends before the gate opens: a poll asks about all six pending ones in one call.
    deadline = time.monotonic() + TIMEOUT_S
    while not any(len(ids) == 6 for ids in list(asked)):
        assert time.monotonic() < deadline, f"no poll asked about all six: {asked}"
        time.sleep(0.1)
    everything = next(index for index, ids in enumerate(asked) if len(ids) == 6)
    gate.touch()
    assert [future.result(timeout=TIMEOUT_S) for future in futures] == [
        index / 10 for index in range(6)
    ]
    # From then on each poll asked about every unsettled one in its one call.
    polls = asked[everything:]
    assert all(later <= earlier for earlier, later in itertools.pairwise(polls))
    # A call that returned leaves no folder (the scheduler's own .out files stay).
    assert not [path for path in executor.folder.iterdir() if path.is_dir()]


def test_after_shutdown_no_call_is_taken(executor: ClusterExecutor) -> None:
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 2)


def test_shutdown_cancel_futures_cancels_every_job_not_done(
    cluster: Cluster, executor: ClusterExecutor
) -> None:
    futures = [executor.submit(sleeps, 300) for _ in range(3)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(future.cancelled() for future in futures)
    ended = cluster.wait([future.job_id for future in futures], timeout=TIMEOUT_S)  # type: ignore[attr-defined]
    assert {info.state for info in ended.values()} == {JobState.CANCELLED}


@pytest.fixture
def submitted(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of every job the executor submits from now on."""
    job_ids: list[str] = []
    submit_many: Callable[[Sequence[JobSpec]], list[str]] = cluster.submit_many

    def recorded(specs: Sequence[JobSpec]) -> list[str]:
        job_ids.extend(submit_many(specs))
        return job_ids[-len(specs) :]

    monkeypatch.setattr(cluster, "submit_many", recorded)
    return job_ids


def test_map_timeout_raises_and_cancels_what_is_left(
    cluster: Cluster, executor: ClusterExecutor, submitted: list[str]
) -> None:
    results = executor.map(sleeps, [300, 300], timeout=1)
    with pytest.raises(FuturesTimeout):
        next(results)
    ended = cluster.wait(submitted, timeout=TIMEOUT_S)
    assert [info.state for info in ended.values()] == [JobState.CANCELLED] * 2


def test_a_map_left_early_cancels_the_rest(
    cluster: Cluster, executor: ClusterExecutor, submitted: list[str]
) -> None:
    results = executor.map(sleeps, [0.1, 300, 300])
    assert next(results) == 0.1
    results.close()  # type: ignore[attr-defined]
    ended = cluster.wait(submitted, timeout=TIMEOUT_S)
    assert [info.state for info in ended.values()] == [
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.CANCELLED,
    ]


def test_import_hpcbridge_and_cluster_load_no_executor() -> None:
    probe = (
        "import sys, hpcbridge; hpcbridge.Cluster; "
        "print(sorted(m for m in sys.modules if 'hpcbridge.executor' in m or m == 'cloudpickle'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_a_transient_poll_failure_is_retried(
    cluster: Cluster, executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = cluster.backend.status
    failures = iter([SchedulerUnavailable("slurmctld is busy")])

    def flaky(job_ids: Sequence[str]) -> dict[str, JobInfo]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return status(job_ids)

    monkeypatch.setattr(cluster.backend, "status", flaky)
    assert executor.submit(sleeps, 1).result(timeout=TIMEOUT_S) == 1
    assert next(failures, None) is None  # the failure was met, and polled past


def test_a_poll_that_breaks_fails_the_futures_instead_of_hanging_them(
    cluster: Cluster, executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(job_ids: Sequence[str]) -> dict[str, JobInfo]:
        raise OSError(f"state folder gone while asking about {list(job_ids)}")

    monkeypatch.setattr(cluster.backend, "status", broken)
    future = executor.submit(sleeps, 300)
    with pytest.raises(OSError, match="state folder gone"):
        future.result(timeout=TIMEOUT_S)
    cluster.cancel(future.job_id)  # type: ignore[attr-defined]
