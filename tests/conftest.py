"""Shared fixtures, and the rule for service-backed tests.

A test marked ``slurm`` needs the real test cluster (tests/cluster/slurm-up.sh), one marked
``postgres`` the PostgreSQL test server (tests/cluster/postgres-up.sh), one marked ``ssh`` the
loopback sshd (tests/cluster/sshd-up.sh). Outside CI a missing service skips such tests with
the reason; with CI=true it fails them instead, so a green CI run always means those tests ran.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hpcbridge import Cluster, SiteConfig
from hpcbridge.site import SshTransportConfig

if TYPE_CHECKING:
    from hpcbridge.transports.ssh import SshTransport

SLURM_SITE = "test-slurm"
# The servers of tests/cluster/sshd-up.sh: a login node, and a gateway (jump host) before it.
SSHD_DIR = Path("/var/lib/hpcbridge-test/sshd")
SSHD_PORT = 2222
GATEWAY_PORT = 2223
SSH_SITE = "test-slurm-ssh"

pytest_plugins = ["pbs_plugin", "ledger_plugin"]


@functools.cache
def slurm_problem() -> str | None:
    """Why the Slurm test cluster cannot be used, or None when it answers."""
    if shutil.which("scontrol") is None:
        return "Slurm is not installed (run tests/cluster/slurm-up.sh)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if "UP" not in ping.stdout:
        return f"slurmctld does not answer: {ping.stdout.strip() or ping.stderr.strip()}"
    return None


@functools.cache
def ssh_problem() -> str | None:
    """Why the loopback sshd of tests/cluster/sshd-up.sh cannot be used, or None when it answers."""
    if importlib.util.find_spec("paramiko") is None:
        return "paramiko is not installed (pip install -e '.[dev]')"
    key = SSHD_DIR / "client_key"
    if not os.access(key, os.R_OK):
        return f"{key} is missing or unreadable (run tests/cluster/sshd-up.sh as root)"
    try:
        with socket.create_connection(("127.0.0.1", SSHD_PORT), timeout=3) as sock:
            banner = sock.recv(64)
    except OSError as exc:
        return f"no sshd on 127.0.0.1:{SSHD_PORT} ({exc}); run tests/cluster/sshd-up.sh"
    if not banner.startswith(b"SSH-2.0-"):
        return f"127.0.0.1:{SSHD_PORT} is not an SSH server (it said {banner!r})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI", "").lower() == "true":
        return  # never skip in CI: a missing service must fail the tests that need it
    from ledger_plugin import postgres_problem  # loaded (and assert-rewritten) as a plugin

    problems = {"slurm": slurm_problem, "postgres": postgres_problem, "ssh": ssh_problem}
    for item in items:
        for marker, problem_of in problems.items():
            problem = problem_of() if marker in item.keywords else None
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
    return _shared_folder("pbs-reference")


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    """The real workload traces in ../shared/traces (SDSC DataStar, Sandia Ross, KTH SP2)."""
    return _shared_folder("traces")


def _shared_folder(name: str) -> Path:
    folder = Path(__file__).resolve().parents[2] / "shared" / name
    if not folder.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {folder} is missing")
        pytest.skip(f"{folder} is not here (it sits beside the repository in CI)")
    return folder


@dataclass(frozen=True)
class LoopbackSshd:
    """Where tests/cluster/sshd-up.sh put its servers, keys and unprivileged test user."""

    folder: Path = SSHD_DIR
    port: int = SSHD_PORT
    gateway_port: int = GATEWAY_PORT
    user: str = "hpcbridge-user"
    user_home: Path = Path("/var/lib/hpcbridge-test/home")


@pytest.fixture
def sshd() -> LoopbackSshd:
    """The loopback sshd's facts (the ``ssh`` marker makes sure it runs)."""
    return LoopbackSshd()


@pytest.fixture
def ssh_settings() -> SshTransportConfig:
    """How test-slurm-ssh reaches the loopback sshd, as root; tests copy it with changes."""
    transport = SiteConfig.load(SSH_SITE).transport
    assert isinstance(transport, SshTransportConfig)
    return transport


@pytest.fixture
def not_shared_site(ssh_settings: SshTransportConfig) -> Iterator[SiteConfig]:
    """test-slurm-ssh for a client that does not share the cluster's filesystem: the
    executor's folders go under a remote_root of this test's own, which this process reaches
    only over SFTP (and, the sshd being on this machine, removes at the end)."""
    remote_root = Path(f"/tmp/hpcbridge-sftp-{uuid.uuid4().hex[:12]}")
    transport = {**ssh_settings.model_dump(), "shared_filesystem": False}
    site = SiteConfig.load(SSH_SITE).model_dump()
    yield SiteConfig.model_validate(
        {**site, "transport": {**transport, "remote_root": str(remote_root)}}
    )
    shutil.rmtree(remote_root, ignore_errors=True)


@pytest.fixture
def ssh_transport(ssh_settings: SshTransportConfig) -> Iterator[SshTransport]:
    """An SSH transport of this test's own to the loopback sshd."""
    from hpcbridge.transports.ssh import SshTransport

    transport = SshTransport(ssh_settings)
    yield transport
    transport.close()


@pytest.fixture
def sshd_session_pid() -> Callable[[SshTransport], int]:
    """The pid of the sshd process serving a transport's connection (a root login).

    SIGKILL to it ends the connection the way a crash or a cut cable would, and touches no
    other test's connection. Root's session runs in that one process, and the remote
    shell's parent is it (bash execs a lone ``sh -c``).
    """

    def session_pid(transport: SshTransport) -> int:
        return int(transport.run(["sh", "-c", "echo $PPID"]).stdout)

    return session_pid
