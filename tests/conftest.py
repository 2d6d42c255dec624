"""Shared fixtures, and the rule for service-backed tests.

A test marked ``slurm`` needs the real test cluster (tests/cluster/slurm-up.sh). Outside CI a
missing cluster skips such tests with the reason; with CI=true it fails them instead, so a
green CI run always means the Slurm tests ran.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcbridge import Cluster

SLURM_SITE = "test-slurm"

pytest_plugins = ["pbs_plugin"]


@functools.cache
def slurm_problem() -> str | None:
    """Why the Slurm test cluster cannot be used, or None when it answers."""
    if shutil.which("scontrol") is None:
        return "Slurm is not installed (run tests/cluster/slurm-up.sh)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if "UP" not in ping.stdout:
        return f"slurmctld does not answer: {ping.stdout.strip() or ping.stderr.strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI", "").lower() == "true":
        return  # never skip in CI: a missing cluster must fail the Slurm tests
    for item in items:
        problem = slurm_problem() if "slurm" in item.keywords else None
        if problem:
            item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A local-backend cluster whose job records live in this test's tmp dir."""
    with Cluster.local(state_dir=tmp_path / "state") as cluster:
        yield cluster


@pytest.fixture
def slurm_cluster() -> Iterator[Cluster]:
    """The real single-node Slurm of tests/cluster."""
    with Cluster.from_site(SLURM_SITE) as cluster:
        yield cluster


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder jobs may write to; world-writable so Slurm jobs of any user can."""
    folder = tmp_path / "work"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


@pytest.fixture(scope="session")
def pbs_reference() -> Path:
    """Real OpenPBS outputs in ../shared/pbs-reference, read (never copied) by tests."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "pbs-reference"
    if not folder.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {folder} is missing")
        pytest.skip(f"{folder} is not here (it sits beside the repository in CI)")
    return folder
