"""Cluster.executor on every backend: Python calls as jobs, their results and their failures.

Runs on the local backend, the real Slurm (directly and over SSH) and the PBS emulator, as
the rest of the contract suite does, and once more over SSH for a client that does not share
the cluster's filesystem (slurm-sftp): the loopback sshd shares this machine's, so there the
test checks that this process never touches the site's remote_root itself (an audit hook sees
every file it opens, lists, makes or removes) and that no call file lands where it runs; the
files travel over SFTP. The functions below are sent by value (``register_pickle_by_value``),
since the workers cannot import this test module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from hpcbridge import JobState
from hpcbridge.errors import JobKilled
from hpcbridge.executor.pool import ClusterExecutor
from hpcbridge.site import SshTransportConfig

from .conftest import EXECUTOR_HARNESSES, Harness

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.parametrize("harness", EXECUTOR_HARNESSES, indirect=True),
]
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# The array an item's id belongs to: each scheduler's own naming of an array task.
ARRAY_OF = re.compile(r"^(\d+)(?:_\d+|\[\d+\]\.\S+)$")
STDERR_MARK = "doomed: about to overrun"


def fails(value: int) -> int:
    if value > 0:
        raise ValueError(f"{value} is not allowed here")
    return value


def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def doomed(cancel_command: str | None) -> None:
    """Says so on stderr, then overruns its walltime or has its own job cancelled."""
    print(STDERR_MARK, file=sys.stderr, flush=True)
    if cancel_command:
        subprocess.run([cancel_command, os.environ["HPCBRIDGE_JOB_ID"]], check=True)
    time.sleep(120)


# What the client process did to files under a remote_root being watched (sftp harness).
_FILE_EVENTS = frozenset(
    {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename", "shutil.rmtree"}
)
_watched: list[str] = []
_touched: list[tuple[str, str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watched and event in _FILE_EVENTS and args and isinstance(args[0], str | os.PathLike):
        path = os.fsdecode(args[0])
        if any(path.startswith(root) for root in _watched):
            _touched.append((event, path))


@pytest.fixture(scope="session")
def audit_hook() -> None:
    sys.addaudithook(_audit)  # for the rest of the process: hooks cannot be removed


def remote_root(harness: Harness) -> str | None:
    """The site's folder for the executor on a cluster that does not share our files."""
    transport = harness.cluster.site.transport
    shared = not isinstance(transport, SshTransportConfig) or transport.shared_filesystem
    return None if shared else str(transport.remote_root)


@pytest.fixture
def root(
    harness: Harness, workdir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Path | None]:
    """The executor's root: the shared workdir, or, where the filesystem is not shared, the
    site's remote_root (None), with this process watched for touching it and run in workdir,
    where no call file may appear."""
    remote = remote_root(harness)
    if remote is None:
        yield workdir
        return
    request.getfixturevalue("audit_hook")
    monkeypatch.chdir(workdir)
    _watched.append(remote)
    try:
        yield None
    finally:
        _watched.remove(remote)
    touched, _touched[:] = list(_touched), []
    assert touched == []
    assert list(workdir.rglob("*")) == []


@pytest.fixture
def executor(harness: Harness, root: Path | None) -> Iterator[ClusterExecutor]:
    with harness.cluster.executor(root=root, resources={"walltime": "5:00"}) as pool:
        yield pool
        if root is None:
            assert str(pool.folder).startswith(f"{remote_root(harness)}/")


def test_a_call_returns_its_value(executor: ClusterExecutor) -> None:
    assert executor.submit(pow, 2, 10).result(timeout=180) == 1024
    assert executor.submit(sorted, [3, 1, 2], reverse=True).result(timeout=180) == [3, 2, 1]


def test_a_remote_exception_is_raised_here_with_its_remote_traceback(
    executor: ClusterExecutor,
) -> None:
    future = executor.submit(fails, 7)
    with pytest.raises(ValueError, match="7 is not allowed here") as caught:
        future.result(timeout=180)
    note = "\n".join(caught.value.__notes__)
    assert note.startswith("remote traceback (job ")
    assert "in fails" in note
    assert "ValueError: 7 is not allowed here" in note


def test_map_is_one_array_with_results_in_order(
    harness: Harness, executor: ClusterExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    submissions, job_ids = _record_submissions(harness, monkeypatch)
    results = executor.map(pow, [3] * 20, range(20), timeout=240)
    assert list(results) == [3**n for n in range(20)]
    assert len(submissions) == 1
    arrays = {match.group(1) for match in map(ARRAY_OF.fullmatch, job_ids) if match}
    assert len(job_ids) == 20
    assert len(arrays) == 1, job_ids


def test_cancel_cancels_the_job(harness: Harness, executor: ClusterExecutor) -> None:
    future = executor.submit(sleeps, 300)
    job_id = _job_id(future)
    harness.wait_for(job_id, lambda info: info.state is JobState.RUNNING, timeout=120)
    assert future.cancel()
    assert future.cancelled()
    ended = harness.wait_for(job_id, lambda info: info.state.is_terminal, timeout=120)
    assert ended.state is JobState.CANCELLED


def test_a_job_the_scheduler_ends_raises_job_killed_with_its_stderr(
    harness: Harness, root: Path | None
) -> None:
    # Slurm's shortest limit is a minute (plus its grace): there the job cancels itself.
    slurm = harness.kind.startswith("slurm")
    walltime = "5:00" if slurm else "0:04"
    with harness.cluster.executor(root=root, resources={"walltime": walltime}) as pool:
        future = pool.submit(doomed, "scancel" if slurm else None)
        with pytest.raises(JobKilled) as caught:
            future.result(timeout=180)
    expected = JobState.CANCELLED if slurm else JobState.TIMEOUT
    assert caught.value.state == expected.value
    assert STDERR_MARK in caught.value.stderr_tail
    assert f"ended by the scheduler: {expected.value}" in str(caught.value)
    assert STDERR_MARK in str(caught.value)
    assert caught.value.folder.startswith(f"{pool.folder}/")  # kept there for a look


def _job_id(future: Future[Any]) -> str:
    job_id: str = getattr(future, "job_id")  # noqa: B009  (a TaskFuture's)
    return job_id


def _record_submissions(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    """From now on: one entry per backend submission (one sbatch or qsub each), and the ids
    submit_many hands out."""
    submissions: list[str] = []
    job_ids: list[str] = []
    submit_many: Callable[..., list[str]] = harness.cluster.submit_many
    backend_submit: Callable[..., str] = harness.cluster.backend.submit

    def counted_submit(*args: Any, **kwargs: Any) -> str:
        submissions.append(backend_submit(*args, **kwargs))
        return submissions[-1]

    def recorded_many(*args: Any, **kwargs: Any) -> list[str]:
        job_ids.extend(submit_many(*args, **kwargs))
        return job_ids

    monkeypatch.setattr(harness.cluster.backend, "submit", counted_submit)
    monkeypatch.setattr(harness.cluster, "submit_many", recorded_many)
    return submissions, job_ids
