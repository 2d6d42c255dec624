"""Real connection faults: sshd killed or restarted, sessions cut mid-command, gateways down.

Each fault is made for real (SIGKILL to the sshd process serving the connection, or a whole
sshd of the test's own stopped and started again); nothing in paramiko is patched. Through it
all a submission must never be duplicated, and safe commands must come back by themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from slurm_queue import jobs_named

from hpcbridge import (
    Cluster,
    CommandResult,
    JobState,
    RecordingTransport,
    SiteConfig,
)
from hpcbridge.errors import TransportUnavailable
from hpcbridge.site import SshTransportConfig
from hpcbridge.transports.ssh import SshTransport

if TYPE_CHECKING:
    from conftest import LoopbackSshd

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]

SessionPid = Callable[[SshTransport], int]


@dataclass
class PrivateSshd:
    """An sshd of one test's own on a free loopback port, to crash and restart at will."""

    config: Path
    pid_file: Path
    port: int

    def start(self) -> None:
        subprocess.run(["/usr/sbin/sshd", "-f", str(self.config)], check=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"sshd on port {self.port} did not start"
                time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL the server and every session it serves, like a login node going down."""
        listener = int(self.pid_file.read_text())
        sessions = subprocess.run(
            ["pgrep", "-P", str(listener)], capture_output=True, text=True, check=False
        ).stdout.split()
        os.kill(listener, signal.SIGKILL)
        for pid in map(int, sessions):
            # A child may end on its own meanwhile: the one that served start()'s readiness
            # probe, say. It needs no killing then.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _private_sshd(sshd: LoopbackSshd, server: str, folder: Path) -> Iterator[PrivateSshd]:
    """A copy of one of sshd-up.sh's servers (same host key and logins) on its own port."""
    port = _free_port()
    pid_file = folder / f"{server}.pid"
    lines = (sshd.folder / f"{server}.conf").read_text().splitlines()
    settings = [line for line in lines if not line.startswith(("Port ", "PidFile "))]
    config = folder / f"{server}.conf"
    config.write_text("\n".join([f"Port {port}", f"PidFile {pid_file}", *settings]) + "\n")
    config.chmod(0o600)
    server_handle = PrivateSshd(config, pid_file, port)
    server_handle.start()
    yield server_handle
    if pid_file.exists():
        server_handle.crash()


@pytest.fixture
def private_sshd(sshd: LoopbackSshd, tmp_path: Path) -> Iterator[PrivateSshd]:
    """A login node of this test's own."""
    yield from _private_sshd(sshd, "target", tmp_path)


@pytest.fixture
def private_gateway(sshd: LoopbackSshd, tmp_path: Path) -> Iterator[PrivateSshd]:
    """A jump host of this test's own."""
    yield from _private_sshd(sshd, "gateway", tmp_path)


def _known_hosts(sshd: LoopbackSshd, folder: Path, **ports: int) -> Path:
    """known_hosts for servers on other ports: ``target=PORT`` files the target's key there."""
    path = folder / "known_hosts"
    with path.open("a") as known:
        for server, port in ports.items():
            key = " ".join((sshd.folder / f"{server}_host_key.pub").read_text().split()[:2])
            known.write(f"[127.0.0.1]:{port} {key}\n")
    return path


def _site_through(transport: SshTransportConfig) -> SiteConfig:
    return SiteConfig.load("test-slurm-ssh").model_copy(update={"transport": transport})


def _job(name: str, workdir: Path, command: str = "sleep 30") -> dict[str, object]:
    return {"name": name, "command": command, "workdir": str(workdir), "stdout": "/dev/null"}


class CutsOffFirst:
    """Runs ``program`` the first time so that its connection dies while it runs.

    The command still runs on the login node, for real; the sshd process serving this
    connection is killed from inside the remote shell (``$PPID`` of a lone ``sh -c``), so no
    byte of the answer comes back. ``after=True`` kills it once the command has finished
    (its answer captured, never sent); otherwise before the command starts.
    """

    def __init__(self, inner: SshTransport, program: str, *, after: bool) -> None:
        self.inner = inner
        self.program = program
        self.after = after
        self.done = False

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        if argv[0] == self.program and not self.done:
            self.done = True
            script = (
                'answer=$("$@"); kill -KILL "$PPID"'
                if self.after
                else 'kill -KILL "$PPID"; exec "$@"'
            )
            argv = ["sh", "-c", script, "sh", *argv]
        return self.inner.run(argv, stdin=stdin, env=env, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.slurm
def test_lost_sbatch_answer_is_found_by_its_token_and_not_resubmitted(
    ssh_transport: SshTransport, workdir: Path
) -> None:
    """sbatch runs on the login node, then the connection dies before its answer arrives."""
    recording = RecordingTransport(CutsOffFirst(ssh_transport, "sbatch", after=True))
    name = f"ssh-lost-answer-{time.time_ns()}"
    with Cluster(SiteConfig.load("test-slurm-ssh"), transport=recording) as cluster:
        cluster.backend.commands.backoff = 0.05  # type: ignore[attr-defined]
        job_id = cluster.submit(_job(name, workdir))
        try:
            assert recording.count("sbatch") == 1  # never sent twice
            assert recording.count("squeue") >= 1  # the token was looked for instead
            assert ssh_transport.connections_made == 2  # the first connection really died
            assert jobs_named(name) == [job_id]
        finally:
            cluster.cancel(job_id)


@pytest.mark.slurm
def test_status_cut_off_mid_command_is_retried_on_a_new_connection(
    ssh_transport: SshTransport, workdir: Path
) -> None:
    with Cluster(SiteConfig.load("test-slurm-ssh")) as setup:
        job_id = setup.submit(_job(f"ssh-status-{time.time_ns()}", workdir))
    recording = RecordingTransport(CutsOffFirst(ssh_transport, "squeue", after=False))
    with Cluster(SiteConfig.load("test-slurm-ssh"), transport=recording) as cluster:
        cluster.backend.commands.backoff = 0.05  # type: ignore[attr-defined]
        try:
            assert cluster.status(job_id)[job_id].state in {JobState.PENDING, JobState.RUNNING}
            assert recording.count("squeue") == 2
            assert ssh_transport.connections_made == 2
        finally:
            cluster.cancel(job_id)


def test_a_connection_killed_mid_command_fails_fast_then_reconnects(
    ssh_transport: SshTransport, sshd_session_pid: SessionPid
) -> None:
    session = sshd_session_pid(ssh_transport)
    threading.Timer(0.5, os.kill, (session, signal.SIGKILL)).start()
    started = time.monotonic()
    with pytest.raises(TransportUnavailable, match="may or may not have taken effect") as caught:
        ssh_transport.run(["sleep", "20"])
    assert time.monotonic() - started < 5
    assert caught.value.transient
    assert "lost the connection to root@127.0.0.1:2222 while sleep ran" in str(caught.value)
    assert ssh_transport.run(["echo", "back"]).stdout == "back\n"
    assert ssh_transport.connections_made == 2


def test_an_idle_connection_that_died_is_replaced_without_an_error(
    ssh_transport: SshTransport, sshd_session_pid: SessionPid
) -> None:
    """Nothing ran when it died, so even a submission may go straight onto a new one."""
    os.kill(sshd_session_pid(ssh_transport), signal.SIGKILL)
    time.sleep(0.2)
    assert ssh_transport.run(["true"]).ok
    assert ssh_transport.connections_made == 2


@pytest.mark.slurm
def test_sshd_restarted_mid_session(
    ssh_settings: SshTransportConfig,
    sshd: LoopbackSshd,
    private_sshd: PrivateSshd,
    tmp_path: Path,
    workdir: Path,
) -> None:
    """The login node's sshd dies with its sessions and comes back 1.5 s later: the status
    query retries through the outage, and the job submitted before is still the only one."""
    settings = ssh_settings.model_copy(
        update={
            "port": private_sshd.port,
            "known_hosts": _known_hosts(sshd, tmp_path, target=private_sshd.port),
        }
    )
    name = f"ssh-restart-{time.time_ns()}"
    with Cluster(_site_through(settings)) as cluster:
        job_id = cluster.submit(_job(name, workdir))
        try:
            private_sshd.crash()
            threading.Timer(1.5, private_sshd.start).start()
            assert cluster.status(job_id)[job_id].state in {JobState.PENDING, JobState.RUNNING}
            assert cluster.transport.connections_made == 2  # type: ignore[attr-defined]
            assert jobs_named(name) == [job_id]
        finally:
            cluster.cancel(job_id)
        assert cluster.wait(job_id, timeout=60)[job_id].state is JobState.CANCELLED


@pytest.mark.slurm
def test_sshd_down_is_a_clear_transient_error_and_submits_nothing(
    ssh_settings: SshTransportConfig,
    sshd: LoopbackSshd,
    private_sshd: PrivateSshd,
    tmp_path: Path,
    workdir: Path,
) -> None:
    settings = ssh_settings.model_copy(
        update={
            "port": private_sshd.port,
            "known_hosts": _known_hosts(sshd, tmp_path, target=private_sshd.port),
        }
    )
    name = f"ssh-down-{time.time_ns()}"
    private_sshd.crash()
    with Cluster(_site_through(settings)) as cluster:
        cluster.backend.commands.backoff = 0.05  # type: ignore[attr-defined]
        with pytest.raises(TransportUnavailable) as caught:
            cluster.submit(_job(name, workdir))
    assert str(caught.value) == (
        f"cannot connect to root@127.0.0.1:{private_sshd.port}: Connection refused"
    )
    assert caught.value.transient
    assert jobs_named(name) == []


def test_a_gateway_going_down_takes_the_route_with_it(
    ssh_settings: SshTransportConfig,
    sshd: LoopbackSshd,
    private_gateway: PrivateSshd,
    tmp_path: Path,
) -> None:
    """Behind a jump host the login node is reached only through it: when the gateway dies
    the connection drops with it, and reconnecting names the gateway it could not reach."""
    settings = ssh_settings.model_copy(
        update={
            "proxy_jump": f"root@127.0.0.1:{private_gateway.port}",
            "known_hosts": _known_hosts(
                sshd, tmp_path, target=sshd.port, gateway=private_gateway.port
            ),
        }
    )
    transport = SshTransport(settings)
    try:
        assert transport.run(["true"]).ok
        private_gateway.crash()
        with pytest.raises(TransportUnavailable) as caught:
            transport.run(["true"])
        assert f"root@127.0.0.1:{private_gateway.port}" in str(caught.value)
        private_gateway.start()
        assert transport.run(["true"]).ok
    finally:
        transport.close()


def test_a_server_that_never_answers_times_out_at_connect_timeout(
    ssh_settings: SshTransportConfig,
) -> None:
    """A port that accepts connections but never speaks SSH (a hung sshd, a wrong service)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        transport = SshTransport(
            ssh_settings.model_copy(update={"port": port, "connect_timeout": 1})
        )
        started = time.monotonic()
        with pytest.raises(TransportUnavailable, match=f"cannot connect to root@127.0.0.1:{port}"):
            transport.run(["true"])
        assert time.monotonic() - started < 5
        transport.close()
