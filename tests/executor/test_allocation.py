"""Cluster.allocation: calls as job steps of an allocation already held, on the real Slurm.

The test holds one with ``salloc --no-shell`` and points the executor at it through Slurm's
own variables, as a process inside the allocation would see them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import pytest

from hpcbridge import Cluster, ConfigError
from hpcbridge.errors import WorkerError

pytestmark = pytest.mark.timeout(300)
cloudpickle.register_pickle_by_value(sys.modules[__name__])
TASKS = 4


def stamped(index: int) -> tuple[int, str, float, float]:
    """Which step ran the call, and when."""
    started = time.time()
    time.sleep(0.3)
    return index, os.environ["SLURM_STEP_ID"], started, time.time()


def fails(value: int) -> int:
    raise ValueError(f"{value} is not allowed here")


@contextmanager
def held_allocation(monkeypatch: pytest.MonkeyPatch, tasks: int, *options: str) -> Iterator[str]:
    """An ``salloc --no-shell`` of ``tasks`` tasks, this process seeing it as its own
    (SLURM_JOB_ID, SLURM_NTASKS), cancelled at the end."""
    argv = ["salloc", f"--ntasks={tasks}", *options, "--no-shell", "--time=10"]
    granted = subprocess.run(
        [*argv, "--job-name=alloc-test"], capture_output=True, text=True, timeout=180, check=True
    )
    found = re.search(r"Granted job allocation (\d+)", granted.stderr)
    assert found, granted.stderr
    job_id = found.group(1)
    monkeypatch.setenv("SLURM_JOB_ID", job_id)
    monkeypatch.setenv("SLURM_NTASKS", str(tasks))
    try:
        yield job_id
    finally:
        subprocess.run(["scancel", job_id], check=False)


@pytest.fixture
def allocation(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with held_allocation(monkeypatch, TASKS) as job_id:
        yield job_id


@pytest.mark.slurm
def test_100_calls_run_as_steps_at_most_4_at_a_time(
    slurm_cluster: Cluster, allocation: str, tmp_path: Path
) -> None:
    with slurm_cluster.allocation(root=tmp_path) as pool:
        results = list(pool.map(stamped, range(100)))
    assert [index for index, *_ in results] == list(range(100))
    assert len({step for _, step, _, _ in results}) == 100  # each call its own step
    moments = sorted([(start, 1) for *_, start, _ in results] + [(end, -1) for *_, end in results])
    running, most = 0, 0
    for _, change in moments:
        running += change
        most = max(most, running)
    assert 1 < most <= TASKS


@pytest.mark.slurm
def test_a_step_raising_is_raised_here_and_a_missing_python_named(
    slurm_cluster: Cluster, allocation: str, tmp_path: Path
) -> None:
    with (
        slurm_cluster.allocation(root=tmp_path) as pool,
        pytest.raises(ValueError, match="7 is not allowed") as caught,
    ):
        pool.submit(fails, 7).result(timeout=120)
    assert "remote traceback" in caught.value.__notes__[0]
    missing = str(tmp_path / "none")
    with (
        slurm_cluster.allocation(root=tmp_path, python=missing) as pool,
        pytest.raises(WorkerError, match=f"job {allocation} \\(step\\): the worker") as caught,
    ):
        pool.submit(pow, 2, 2).result(timeout=120)
    assert missing in str(caught.value)  # srun's complaint, in the stderr tail


def test_outside_an_allocation_or_on_the_local_backend_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="SLURM_JOB_ID is not set"):
        Cluster.from_site("test-slurm").allocation(root=tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    with pytest.raises(ConfigError, match="inside a Slurm or PBS job; a local site has none"):
        Cluster.local(tmp_path / "state").allocation(root=tmp_path)
