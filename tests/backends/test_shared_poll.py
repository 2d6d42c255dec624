"""Shared polling across processes, on the real test Slurm and the PBS emulator: processes
waiting together ask the scheduler for its listing once per interval between them, each
still sees its own job end within its interval, and a stale snapshot is refreshed by one.

Each process (shared_poll_child.py) notes when it started each scheduler command; the
listing calls of all of them, merged, must lie at least one interval apart.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, HpcBridgeError, SiteConfig
from hpcbridge.backends.slurm import SlurmBackend
from hpcbridge.backends.snapshot import SharedPoll

pytestmark = pytest.mark.timeout(300)

CHILD = Path(__file__).with_name("shared_poll_child.py")
# wait() backs off from its first interval by 1.5x per quiet poll up to this (cluster.py).
LONGEST_INTERVAL_S = 10.0
# What a loaded 2-core machine adds to an interval: the job's own end in the scheduler, the
# refresh, sacct or qstat for the exit code, and the process being scheduled at all.
SLACK_S = 3.0


def run_together(
    site: str, mode: str, interval: float, jobs: Sequence[Sequence[str]], folder: Path
) -> tuple[float, list[dict[str, Any]]]:
    """One child per entry of ``jobs``, all started at once (after each has imported
    hpcbridge); the moment they were let go and what each printed."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(folder / "run")}
    (folder / "run").mkdir(exist_ok=True, mode=0o700)
    go = folder / "go"
    children = []
    for index, job_ids in enumerate(jobs):
        ready = folder / f"ready-{index}"
        argv = [sys.executable, str(CHILD), site, str(ready), str(go), mode, str(interval)]
        children.append(
            (ready, subprocess.Popen([*argv, *job_ids], stdout=subprocess.PIPE, env=env, text=True))
        )
    try:
        deadline = time.monotonic() + 120
        while not all(ready.exists() for ready, _ in children):
            assert all(child.poll() is None for _, child in children), "a child died early"
            assert time.monotonic() < deadline, "the children never got ready"
            time.sleep(0.05)
        started = time.time()
        go.touch()
        outputs = [child.communicate(timeout=200)[0] for _, child in children]
    finally:
        for _, child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert all(child.returncode == 0 for _, child in children), outputs
    return started, [json.loads(output) for output in outputs]


def calls_of(results: list[dict[str, Any]], program: str) -> list[tuple[float, list[str]]]:
    """Every child's calls of ``program``, in the order they started."""
    return sorted(
        (stamp, argv)
        for result in results
        for stamp, argv in result["commands"]
        if argv[0] == program
    )


def gaps(stamps: Sequence[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(stamps)]


def latest_sighting(started: float, ended: float, first_interval: float) -> float:
    """When a lone waiter started at ``started`` would have seen a job end at ``ended``, at
    the latest: wait's poll k sleeps for half the time since it began plus 1.5 first
    intervals (capped), so an end at E is seen within min(10, E/2 + 1.5 p)."""
    since = ended - started
    return ended + min(LONGEST_INTERVAL_S, since / 2 + 1.5 * first_interval) + SLACK_S


def gated(go: Path, seconds: float, end: Path) -> str:
    """A job that starts its work when ``go`` appears and notes when it ends."""
    return f"until [ -e {go} ]; do sleep 0.1; done; sleep {seconds}; date +%s.%N > {end}"


@pytest.fixture
def slurm_cluster_cleaned() -> Iterator[tuple[Cluster, list[str]]]:
    """The test Slurm, and a list of job ids to cancel if the test leaves them running."""
    jobs: list[str] = []
    with Cluster.from_site("test-slurm") as cluster:
        yield cluster, jobs
        with contextlib.suppress(HpcBridgeError):
            active = cluster.backend.status(jobs)
            cluster.cancel([job for job, info in active.items() if not info.state.is_terminal])


@pytest.mark.slurm
def test_slurm_waiters_share_one_squeue_per_interval(
    slurm_cluster_cleaned: tuple[Cluster, list[str]], workdir: Path, tmp_path: Path
) -> None:
    cluster, jobs = slurm_cluster_cleaned
    interval = 1.0
    go, ends = tmp_path / "go", [workdir / f"end-{index}" for index in range(6)]
    for index, end in enumerate(ends):
        command = gated(go, 0.5 * index, end)
        spec = {"name": "shared-poll", "command": command, "workdir": str(workdir)}
        jobs.append(cluster.submit({**spec, "stdout": "/dev/null"}))

    started, results = run_together("test-slurm", "wait", interval, [[j] for j in jobs], tmp_path)

    for job, end, result in zip(jobs, ends, results, strict=True):
        assert result["seen"] == {job: ["COMPLETED", 0]}
        ended = float(end.read_text())
        assert result["returned"] <= latest_sighting(started, ended, interval), (job, ended)
    squeues = calls_of(results, "squeue")
    assert all("--me" in argv for _, argv in squeues)
    assert min(gaps([stamp for stamp, _ in squeues]), default=interval) >= interval - 0.1
    last = max(result["returned"] for result in results)
    assert len(squeues) <= (last - started) / interval + 1


@pytest.mark.slurm
@pytest.mark.ssh
def test_over_ssh_the_snapshot_is_shared_where_the_clusters_run(
    slurm_cluster_cleaned: tuple[Cluster, list[str]], workdir: Path, tmp_path: Path
) -> None:
    cluster, jobs = slurm_cluster_cleaned
    interval = 1.0
    go, ends = tmp_path / "go", [workdir / f"end-{index}" for index in range(4)]
    for index, end in enumerate(ends):
        command = gated(go, index, end)
        spec = {"name": "shared-ssh", "command": command, "workdir": str(workdir)}
        jobs.append(cluster.submit({**spec, "stdout": "/dev/null"}))

    site = "test-slurm-ssh"
    started, results = run_together(site, "wait", interval, [[j] for j in jobs], tmp_path)

    assert [result["seen"] for result in results] == [{j: ["COMPLETED", 0]} for j in jobs]
    squeues = [stamp for stamp, _ in calls_of(results, "squeue")]
    assert min(gaps(squeues), default=interval) >= interval - 0.1
    assert len(squeues) <= (max(r["returned"] for r in results) - started) / interval + 1
    assert (tmp_path / "run" / "hpcbridge" / "status-test-slurm-ssh.json").is_file()


@pytest.mark.slurm
def test_a_stale_snapshot_is_refreshed_by_exactly_one_process(
    slurm_cluster_cleaned: tuple[Cluster, list[str]], tmp_path: Path
) -> None:
    cluster, jobs = slurm_cluster_cleaned
    jobs.append(cluster.submit({"name": "shared-stale", "command": "true", "hold": True}))
    assert isinstance(cluster.backend, SlurmBackend)
    snapshot = SharedPoll(cluster.backend, "test-slurm", tmp_path / "run" / "hpcbridge")
    snapshot.path.parent.mkdir(parents=True, mode=0o700)
    stale = {"format": 1, "taken": time.time() - 3600, "jobs": []}
    snapshot.path.write_text(json.dumps(stale))

    _, results = run_together("test-slurm", "status", 60, [jobs] * 8, tmp_path)

    assert [result["seen"] for result in results] == [{jobs[0]: ["PENDING", None]}] * 8
    assert len(calls_of(results, "squeue")) == 1
    assert calls_of(results, "sacct") == []
    assert json.loads(snapshot.path.read_text())["taken"] > stale["taken"]


@pytest.mark.pbs
def test_pbs_waiters_share_one_qstat_listing_per_interval(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    interval = 1.0
    go, ends = tmp_path / "go", [tmp_path / f"end-{index}" for index in range(4)]
    with Cluster(SiteConfig.load("test-pbs")) as cluster:
        jobs = [
            cluster.submit({"name": "shared", "command": gated(go, index, end)})
            for index, end in enumerate(ends)
        ]

    started, results = run_together("test-pbs", "wait", interval, [[j] for j in jobs], tmp_path)

    for job, end, result in zip(jobs, ends, results, strict=True):
        assert result["seen"] == {job: ["COMPLETED", 0]}
        ended = float(end.read_text())
        assert result["returned"] <= latest_sighting(started, ended, interval), (job, ended)
    qstats = calls_of(results, "qstat")
    listings = [stamp for stamp, argv in qstats if not any(a[0].isdigit() for a in argv[1:])]
    assert listings, qstats
    assert min(gaps(listings), default=interval) >= interval - 0.1
    # A job that finished leaves the listing (no -x): its history is asked once, by its waiter.
    histories = [argv[-1] for _, argv in qstats if "-x" in argv]
    assert sorted(histories) == sorted(jobs)
