"""SSH settings without a server: site config rules, ~/.ssh/config merging, command quoting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hpcbridge import Cluster, ConfigError, SiteConfig, TransportError
from hpcbridge.site import SshTransportConfig
from hpcbridge.transports.ssh import remote_command
from hpcbridge.transports.ssh_route import Endpoint, resolve_route

SSH_CONFIG = """\
Host cluster
    HostName login.example.org
    User alice
    Port 2200
    IdentityFile ~/.ssh/cluster_key
    ProxyJump gw
Host gw
    HostName gateway.example.org
    User bob
    IdentitiesOnly yes
Host bastion
    HostName bastion.example.org
    ProxyJump gw
Host legacy
    HostName old.example.org
    ProxyCommand nc -X connect proxy.example.org:3128 %h %p
Host loop
    ProxyJump loop
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, holding the key ~/.ssh/config names."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True)
    (folder / ".ssh" / "cluster_key").touch()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def settings(tmp_path: Path, **fields: object) -> SshTransportConfig:
    config = tmp_path / "ssh_config"
    config.write_text(SSH_CONFIG)
    return SshTransportConfig.model_validate({"kind": "ssh", "ssh_config": config, **fields})


def key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.touch()
    return path


def test_ssh_config_fills_in_what_the_site_leaves_out(tmp_path: Path, home: Path) -> None:
    route = resolve_route(settings(tmp_path, host="cluster"))
    assert route.target == Endpoint(
        hostname="login.example.org",
        port=2200,
        user="alice",
        identity_files=(home / ".ssh/cluster_key",),
        allow_agent=True,
    )
    (gateway,) = route.jumps
    assert (gateway.hostname, gateway.port, gateway.user) == ("gateway.example.org", 22, "bob")
    assert not gateway.allow_agent  # IdentitiesOnly yes
    assert route.known_hosts[0] == home / ".ssh/known_hosts"
    assert route.trusted_file == home / ".ssh/known_hosts"
    assert str(route.target) == "alice@login.example.org:2200"
    assert route.target.known_hosts_name == "[login.example.org]:2200"


def test_site_values_win_over_the_ssh_config(tmp_path: Path) -> None:
    carol = key(tmp_path, "carol")
    route = resolve_route(
        settings(
            tmp_path,
            host="cluster",
            port=22,
            user="carol",
            identity_file=carol,
            known_hosts="/etc/hpc/known_hosts",
            proxy_jump="none",
        )
    )
    assert (route.target.port, route.target.user) == (22, "carol")
    assert route.target.identity_files == (carol,)
    assert route.target.known_hosts_name == "login.example.org"
    assert route.jumps == ()
    assert route.known_hosts == (Path("/etc/hpc/known_hosts"),)


def test_jump_chains_follow_the_first_hop_and_borrow_the_site_key(tmp_path: Path) -> None:
    site_key = key(tmp_path, "site_key")
    route = resolve_route(
        settings(
            tmp_path,
            host="10.0.0.5",
            identity_file=site_key,
            proxy_jump="bastion,ssh://dave@inner:2022",
        )
    )
    assert [hop.hostname for hop in route.jumps] == [
        "gateway.example.org",
        "bastion.example.org",
        "inner",
    ]
    assert route.jumps[0].identity_files == (site_key,)  # gw's entry names no key
    inner = route.jumps[-1]
    assert (inner.user, inner.port, inner.identity_files) == ("dave", 2022, (site_key,))
    assert route.target.hostname == "10.0.0.5"


@pytest.mark.parametrize(
    ("spec", "hop"),
    [
        ("[::1]:2222", ("::1", 2222, None)),
        ("erin@[fe80::1]", ("fe80::1", 22, "erin")),
        ("frank@host.example:23", ("host.example", 23, "frank")),
    ],
)
def test_jump_host_spellings(tmp_path: Path, spec: str, hop: tuple[str, int, str | None]) -> None:
    (jump,) = resolve_route(settings(tmp_path, host="x", proxy_jump=spec)).jumps
    hostname, port, user = hop
    assert (jump.hostname, jump.port) == (hostname, port)
    if user:
        assert jump.user == user


def test_proxy_command_applies_to_the_first_hop_only(tmp_path: Path) -> None:
    direct = resolve_route(settings(tmp_path, host="legacy"))
    assert direct.target.proxy_command == "nc -X connect proxy.example.org:3128 old.example.org 22"
    jumped = resolve_route(settings(tmp_path, host="legacy", proxy_jump="gw"))
    assert jumped.target.proxy_command is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "loop"}, "more than 8 jump hosts, or a loop"),
        ({"host": "x", "proxy_jump": "user@:22"}, "is not [user@]host[:port]"),
        ({"host": "x", "proxy_jump": "host:port"}, "is not [user@]host[:port]"),
        ({"host": "x", "ssh_config": "/nonexistent/ssh_config"}, "does not exist"),
        ({"host": "x", "identity_file": "/nonexistent/key"}, "identity_file: /nonexistent/key"),
    ],
)
def test_bad_ssh_settings_are_config_errors(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_route(settings(tmp_path, **fields))


def test_site_configs_hold_no_passwords(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("scheduler: slurm\ntransport: {kind: ssh, host: h, password: hunter2}\n")
    with pytest.raises(ConfigError, match="passwords are never stored in site configs"):
        SiteConfig.load(path)


def test_transport_kind_picks_the_settings_and_defaults_to_local(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("scheduler: slurm\ntransport: {command_timeout: 5}\n")
    assert SiteConfig.load(path).transport.kind == "local"
    path.write_text("scheduler: slurm\ntransport: {kind: telnet}\n")
    with pytest.raises(ConfigError, match="'local', 'ssh'"):
        SiteConfig.load(path)
    path.write_text("scheduler: slurm\ntransport: {kind: ssh, host: alice@login}\n")
    with pytest.raises(ConfigError, match="give the user as `user:`"):
        SiteConfig.load(path)
    path.write_text("scheduler: slurm\ntransport: {kind: ssh, port: 22}\n")
    with pytest.raises(ConfigError, match=r"transport\.ssh\.host: Field required"):
        SiteConfig.load(path)
    example = SiteConfig.load("example-slurm-ssh").transport
    assert isinstance(example, SshTransportConfig)
    assert example.host_key_policy == "reject"


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (["squeue", "--jobs=1,2"], None, "squeue --jobs=1,2"),
        (["echo", "$(id)", "a b", "it's"], None, "echo '$(id)' 'a b' 'it'\"'\"'s'"),
        (["squeue"], {"TZ": "UTC", "X": "; rm -rf /"}, "env TZ=UTC 'X=; rm -rf /' squeue"),
    ],
)
def test_remote_command_quotes_every_word(
    argv: list[str], env: dict[str, str] | None, line: str
) -> None:
    assert remote_command(argv, env) == line


@pytest.mark.parametrize(("argv", "env"), [([], None), (["true"], {"BAD NAME": "x"})])
def test_remote_commands_that_cannot_be_built(argv: list[str], env: dict[str, str] | None) -> None:
    with pytest.raises(TransportError):
        remote_command(argv, env)


def test_ssh_sites_without_paramiko_say_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [name for name in sys.modules if name.startswith("hpcbridge.transports.ssh")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "paramiko", None)  # what an install without [ssh] has
    with pytest.raises(ConfigError, match=r"pip install 'hpcbridge\[ssh\]'"):
        Cluster.from_site("example-slurm-ssh")
