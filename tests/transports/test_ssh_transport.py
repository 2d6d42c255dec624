"""The SSH transport against the real loopback sshd of tests/cluster/sshd-up.sh.

Commands, quoting, streams and time limits on one kept connection; logging in the ways users
have it set up (~/.ssh/config, ssh-agent, ProxyJump, ProxyCommand).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcbridge import CommandResult, CommandTimeout, TransportError
from hpcbridge.site import SshTransportConfig
from hpcbridge.transports.ssh import SshTransport

if TYPE_CHECKING:
    from conftest import LoopbackSshd

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def transport_with(settings_: SshTransportConfig, **changes: object) -> SshTransport:
    return SshTransport(settings_.model_copy(update=changes))


def test_commands_report_output_and_exit_status(ssh_transport: SshTransport) -> None:
    argv = ["sh", "-c", 'echo "$X"; echo err >&2; exit 3']
    result = ssh_transport.run(argv, env={"X": "y z"})
    assert result == CommandResult(tuple(argv), 3, "y z\n", "err\n")


def test_every_command_reuses_one_connection(ssh_settings: SshTransportConfig) -> None:
    transport = SshTransport(ssh_settings)
    assert transport.connections_made == 0  # nothing happens until the first command
    try:
        seen = {transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout for _ in range(5)}
    finally:
        transport.close()
    assert len(seen) == 1  # the same client port every time: one TCP connection
    assert transport.connections_made == 1


words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=st.lists(words, min_size=1, max_size=4), value=words)
def test_hostile_words_arrive_intact(
    ssh_transport: SshTransport, argv: list[str], value: str
) -> None:
    """Quotes, $(...), backticks, newlines, globs: the remote shell expands none of them."""
    result = ssh_transport.run(
        ["sh", "-c", 'printf "%s\\0" "$@"; printf "%s" "$V" >&2', "sh", *argv], env={"V": value}
    )
    assert result.returncode == 0
    assert result.stdout.split("\0")[:-1] == argv
    assert result.stderr == value


def test_stdin_arrives_unchanged(ssh_transport: SshTransport) -> None:
    script = "#!/bin/bash\necho $(hostname) `id` '$HOME'\n" + "x" * 1_000_000 + "\n"
    assert ssh_transport.run(["cat"], stdin=script).stdout == script


def test_input_a_command_leaves_unread_is_no_error(ssh_transport: SshTransport) -> None:
    """More input than the SSH window, to a command that exits without reading it."""
    result = ssh_transport.run(["sh", "-c", "exit 4"], stdin="x" * 5_000_000)
    assert result.returncode == 4


def test_a_command_stuck_before_reading_its_input_times_out(ssh_transport: SshTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"ran past 1 s"):
        ssh_transport.run(["sleep", "30"], stdin="x" * 5_000_000, timeout=1)
    assert time.monotonic() - started < 5
    assert ssh_transport.run(["true"]).ok


def test_large_stdout_and_stderr_together_do_not_stall(ssh_transport: SshTransport) -> None:
    """Both streams share one SSH window; reading only one would hang on the other."""
    size = 3_000_000
    command = f"head -c {size} /dev/zero | tr '\\0' e >&2; head -c {size} /dev/zero | tr '\\0' o"
    result = ssh_transport.run(["sh", "-c", command])
    assert (len(result.stdout), len(result.stderr)) == (size, size)


def test_output_past_the_cap_stops_the_command_with_bounded_memory(
    ssh_settings: SshTransportConfig,
) -> None:
    """50 MB printed with an 8 MB cap: refused as soon as the cap is passed, having kept at
    most the cap (not the 150 MB three copies of 50 MB cost before), and the connection
    stays usable."""
    transport = SshTransport(ssh_settings.model_copy(update={"max_output_mb": 8}))
    tracemalloc.start()
    try:
        with pytest.raises(TransportError, match=r"printed more than 8 MB .* ssh\.max_output_mb"):
            transport.run(["head", "-c", "50000000", "/dev/zero"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        assert transport.run(["echo", "still here"]).stdout == "still here\n"
        transport.close()
    assert peak < 3 * 8 * 2**20


def test_commands_past_their_limit_time_out_and_the_connection_stays(
    ssh_transport: SshTransport,
) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"sleep 30 ran past 0\.5 s on root@") as caught:
        ssh_transport.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert caught.value.transient
    assert ssh_transport.run(["true"]).ok
    assert ssh_transport.connections_made == 1


def test_a_timed_out_command_is_killed_on_the_remote_side(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd
) -> None:
    """The SSH "signal" request stops it (sshd honours it for every login but root's)."""
    pid_file = sshd.user_home / f"pid-{uuid.uuid4().hex}"
    transport = transport_with(ssh_settings, user=sshd.user)
    try:
        with pytest.raises(CommandTimeout):
            transport.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=1)
    finally:
        transport.close()
    pid = int(pid_file.read_text())
    pid_file.unlink()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "sleep" in _cmdline(pid):
        assert time.monotonic() < deadline, f"remote sleep {pid} still runs after the timeout"
        time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_settings_come_from_the_ssh_config_named_in_the_site(sshd: LoopbackSshd) -> None:
    """sshd-up.sh's ssh_config gives HostName, Port, User, IdentityFile, UserKnownHostsFile."""
    settings_ = SshTransportConfig(
        kind="ssh", host="hpcbridge-test", ssh_config=sshd.folder / "ssh_config"
    )
    transport = SshTransport(settings_)
    try:
        assert transport.run(["id", "-un"]).stdout == "root\n"
    finally:
        transport.close()
    assert str(transport.route.target) == f"root@127.0.0.1:{sshd.port}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of this test's own, with an empty ~/.ssh: no real user's keys or config."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return folder


def test_the_users_own_ssh_config_and_known_hosts_are_the_default(
    home: Path, sshd: LoopbackSshd
) -> None:
    key = home / ".ssh" / "cluster_key"
    shutil.copy(sshd.folder / "client_key", key)
    shutil.copy(sshd.folder / "known_hosts", home / ".ssh" / "known_hosts")
    (home / ".ssh" / "config").write_text(
        f"Host cluster\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        "  IdentityFile ~/.ssh/cluster_key\n"
    )
    transport = SshTransport(SshTransportConfig(kind="ssh", host="cluster"))
    try:
        assert transport.run(["id", "-un"]).stdout == f"{sshd.user}\n"
    finally:
        transport.close()


@pytest.fixture
def ssh_agent(home: Path, sshd: LoopbackSshd, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real ssh-agent of this test's own holding the test key (and nothing on disk)."""
    started = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    found = dict(re.findall(r"(SSH_AUTH_SOCK|SSH_AGENT_PID)=([^;]+);", started.stdout))
    monkeypatch.setenv("SSH_AUTH_SOCK", found["SSH_AUTH_SOCK"])
    try:
        subprocess.run(
            ["ssh-add", "-q", str(sshd.folder / "client_key")], check=True, capture_output=True
        )
        yield
    finally:
        os.kill(int(found["SSH_AGENT_PID"]), 15)


@pytest.mark.usefixtures("ssh_agent")
def test_keys_held_by_ssh_agent_log_in(ssh_settings: SshTransportConfig) -> None:
    transport = transport_with(ssh_settings, identity_file=None)
    try:
        assert transport.route.target.identity_files == ()
        assert transport.run(["true"]).ok
    finally:
        transport.close()


def _sshd_process_holding(port: int) -> int:
    """The pid of the process whose TCP connection has local port ``port``."""
    listing = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r'"sshd",pid=(\d+)', listing)
    assert match, f"no sshd holds local port {port}: {listing!r}"
    return int(match.group(1))


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_proxyjump_from_the_ssh_config_goes_through_the_gateway(sshd: LoopbackSshd) -> None:
    settings_ = SshTransportConfig(
        kind="ssh", host="hpcbridge-behind-gateway", ssh_config=sshd.folder / "ssh_config"
    )
    transport = SshTransport(settings_)
    try:
        client_port = int(transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[1])
        # The login node sees a connection coming from the gateway's sshd, not from us.
        forwarder = _sshd_process_holding(client_port)
        gateway = int((sshd.folder / "gateway.pid").read_text())
        assert _parent(forwarder) == gateway
    finally:
        transport.close()
    assert [str(hop) for hop in transport.route.jumps] == [f"root@127.0.0.1:{sshd.gateway_port}"]


def test_proxy_jump_in_the_site_config(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd
) -> None:
    transport = transport_with(ssh_settings, proxy_jump=f"root@127.0.0.1:{sshd.gateway_port}")
    try:
        assert transport.run(["echo", "through the gateway"]).stdout == "through the gateway\n"
        assert transport.run(["true"]).ok
    finally:
        transport.close()
    assert transport.connections_made == 1


def test_proxy_command_from_the_ssh_config(tmp_path: Path, sshd: LoopbackSshd) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host via-command\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
        f"  IdentityFile {sshd.folder / 'client_key'}\n"
        f"  UserKnownHostsFile {sshd.folder / 'known_hosts'}\n"
        f"  ProxyCommand ssh -F {sshd.folder / 'ssh_config'} -W %h:%p hpcbridge-gateway\n"
    )
    transport = SshTransport(SshTransportConfig(kind="ssh", host="via-command", ssh_config=config))
    try:
        assert transport.run(["echo", "ok"]).stdout == "ok\n"
    finally:
        transport.close()
