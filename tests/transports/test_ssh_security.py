"""Host keys and logins, refused for real by the loopback sshd: each with a clear way out.

None of these errors is transient: retrying cannot fix a wrong key, so the scheduler layer
must fail at once instead of backing off.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from click.testing import CliRunner

from hpcbridge import Cluster, SiteConfig, TransportError
from hpcbridge.cli.main import main
from hpcbridge.site import SshTransportConfig
from hpcbridge.transports.ssh import SshTransport

if TYPE_CHECKING:
    from conftest import LoopbackSshd

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def host_key(sshd: LoopbackSshd, server: str) -> str:
    """``type base64`` of one test server's host key."""
    return " ".join((sshd.folder / f"{server}_host_key.pub").read_text().split()[:2])


def refused(settings: SshTransportConfig, **changes: object) -> TransportError:
    transport = SshTransport(settings.model_copy(update=changes))
    try:
        with pytest.raises(TransportError) as caught:
            transport.run(["true"])
    finally:
        transport.close()
    assert not caught.value.transient
    return caught.value


def test_an_unknown_host_is_refused_with_the_command_that_trusts_it(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    error = refused(ssh_settings, known_hosts=known_hosts)
    message = str(error)
    assert f"unknown host [127.0.0.1]:{sshd.port}" in message
    assert "host_key_policy: accept-new" in message
    advice = re.search(r"`(ssh-keyscan [^`]+)`", message)
    assert advice
    assert advice.group(1) == f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known_hosts}"
    # The advice works as written.
    subprocess.run(advice.group(1), shell=True, check=True, capture_output=True)
    transport = SshTransport(ssh_settings.model_copy(update={"known_hosts": known_hosts}))
    try:
        assert transport.run(["true"]).ok
    finally:
        transport.close()


def test_an_unknown_host_fails_the_cluster_at_once_without_retrying(
    ssh_settings: SshTransportConfig, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    transport = ssh_settings.model_copy(update={"known_hosts": known_hosts})
    site = SiteConfig.load("test-slurm-ssh").model_copy(update={"transport": transport})
    started = time.monotonic()
    with Cluster(site) as cluster, pytest.raises(TransportError, match="unknown host"):
        cluster.check()
    assert time.monotonic() - started < 3  # four tries would back off for 3.5 s
    assert cluster.transport.connections_made == 0  # type: ignore[attr-defined]


def test_known_hosts_files_are_read_as_ssh_reads_them(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    """Comments, markers paramiko cannot check and broken lines are passed over, and a
    hashed entry (HashKnownHosts yes, Debian's default) after them still counts."""
    hashed = subprocess.run(
        ["ssh-keyscan", "-H", "-t", "ed25519", "-p", str(sshd.port), "127.0.0.1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert hashed.startswith("|1|")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        "# managed by hand\n"
        f"@cert-authority *.example.org {host_key(sshd, 'gateway')}\n"
        "broken.example.org ssh-ed25519 not-base64!\n"
        f"{hashed}"
    )
    transport = SshTransport(ssh_settings.model_copy(update={"known_hosts": known_hosts}))
    try:
        assert transport.run(["true"]).ok
    finally:
        transport.close()


def test_accept_new_trusts_a_new_host_once_and_records_its_key(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "new-folder" / "known_hosts"
    transport = SshTransport(
        ssh_settings.model_copy(
            update={"known_hosts": known_hosts, "host_key_policy": "accept-new"}
        )
    )
    try:
        assert transport.run(["true"]).ok
    finally:
        transport.close()
    recorded = f"[127.0.0.1]:{sshd.port} {host_key(sshd, 'target')}\n"
    assert known_hosts.read_text() == recorded
    # From now on the recorded key is what the default policy checks against.
    strict = SshTransport(ssh_settings.model_copy(update={"known_hosts": known_hosts}))
    try:
        assert strict.run(["true"]).ok
    finally:
        strict.close()
    assert known_hosts.read_text() == recorded


@pytest.mark.parametrize("policy", ["reject", "accept-new"])
def test_a_changed_host_key_is_refused_whatever_the_policy(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd, tmp_path: Path, policy: str
) -> None:
    known_hosts = tmp_path / "known_hosts"
    wrong = f"[127.0.0.1]:{sshd.port} {host_key(sshd, 'gateway')}\n"  # another server's key
    known_hosts.write_text(wrong)
    error = refused(ssh_settings, known_hosts=known_hosts, host_key_policy=policy)
    message = str(error)
    assert f"the host key of [127.0.0.1]:{sshd.port} has CHANGED" in message
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {known_hosts}" in message
    assert message.count("SHA256:") == 2  # the recorded and the offered fingerprint
    assert known_hosts.read_text() == wrong  # nothing overwritten


def test_a_jump_host_with_an_unknown_key_is_named(
    ssh_settings: SshTransportConfig, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {host_key(sshd, 'target')}\n")
    error = refused(
        ssh_settings,
        known_hosts=known_hosts,
        proxy_jump=f"root@127.0.0.1:{sshd.gateway_port}",
    )
    assert f"unknown host [127.0.0.1]:{sshd.gateway_port}" in str(error)


def test_a_key_the_server_does_not_know_is_refused_with_advice(
    ssh_settings: SshTransportConfig, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    message = str(refused(ssh_settings, identity_file=stranger))
    assert f"cannot log in to root@127.0.0.1:2222: the server refused key file {stranger}" in (
        message
    )
    assert "authorized_keys" in message
    assert "ssh-agent" in message


def test_an_unknown_user_is_refused(ssh_settings: SshTransportConfig) -> None:
    assert "cannot log in to no-such-user@" in str(refused(ssh_settings, user="no-such-user"))


def test_a_passphrase_protected_key_asks_for_ssh_agent(
    ssh_settings: SshTransportConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    locked = tmp_path / "locked_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)], check=True
    )
    message = str(refused(ssh_settings, identity_file=locked))
    assert "protected by a passphrase" in message
    assert f"ssh-add {locked}" in message


def test_the_cli_reports_an_unknown_host_with_exit_code_5(
    ssh_settings: SshTransportConfig, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    site = SiteConfig.load("test-slurm-ssh").model_dump(mode="json", exclude={"name"})
    site["transport"]["known_hosts"] = str(known_hosts)
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(site))
    result = CliRunner().invoke(main, ["site", "check", "--site", str(path)])
    assert result.exit_code == 5
    assert "unknown host [127.0.0.1]:2222" in result.stderr
    assert "ssh-keyscan -p 2222 127.0.0.1" in result.stderr
