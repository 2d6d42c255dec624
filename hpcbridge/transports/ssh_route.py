"""Where an SSH transport logs in: the site's settings completed from ``~/.ssh/config``.

Users already describe their clusters to OpenSSH (HostName, User, Port, IdentityFile,
ProxyJump); a site config that says only ``host: mycluster`` must reach the same machine the
same way ``ssh mycluster`` does. Values written in the site config win over ``~/.ssh/config``.
Only the host key policy is never taken from there: trusting unknown hosts is a decision the
site config has to state (``host_key_policy: accept-new``).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from hpcbridge.errors import ConfigError
from hpcbridge.jobs.units import is_decimal
from hpcbridge.site import SshTransportConfig

DEFAULT_PORT = 22
# OpenSSH's defaults for UserKnownHostsFile and GlobalKnownHostsFile (ssh_config(5)).
USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# A jump host may name its own ProxyJump; a loop in ~/.ssh/config must not recurse forever.
MAX_HOPS = 8


@dataclass(frozen=True)
class Endpoint:
    """One SSH server to log in to, and how."""

    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...]
    allow_agent: bool
    proxy_command: str | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name its key is filed under in known_hosts: ``host`` or ``[host]:port``."""
        return self.hostname if self.port == DEFAULT_PORT else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


@dataclass(frozen=True)
class Route:
    """The jump hosts to pass through, in order, then the login node itself."""

    jumps: tuple[Endpoint, ...]
    target: Endpoint
    known_hosts: tuple[Path, ...]  # read, in order
    trusted_file: Path  # where a host trusted on first use is written

    @property
    def hops(self) -> tuple[Endpoint, ...]:
        """Every server logged in to, outermost first."""
        return (*self.jumps, self.target)


def resolve_route(config: SshTransportConfig) -> Route:
    """Complete the site's SSH settings from the SSH client config, as ``ssh host`` would."""
    ssh_config = _load_ssh_config(config.ssh_config)
    entry = ssh_config.lookup(config.host)
    identity = (config.identity_file,) if config.identity_file else ()
    if config.identity_file and not config.identity_file.is_file():
        raise ConfigError(f"identity_file: {config.identity_file} does not exist")
    target = _endpoint(entry, port=config.port, user=config.user, identity=identity)
    jumps = _jumps(config.proxy_jump or entry.get("proxyjump"), ssh_config, identity, depth=1)
    if jumps:  # a ProxyCommand only ever applies to the first hop, as in OpenSSH
        target = replace(target, proxy_command=None)
    if config.known_hosts:
        known_hosts: tuple[Path, ...] = (config.known_hosts,)
    else:
        user_files = entry.get("userknownhostsfile", " ".join(USER_KNOWN_HOSTS)).split()
        known_hosts = tuple(Path(name).expanduser() for name in (*user_files, *GLOBAL_KNOWN_HOSTS))
    return Route(jumps=jumps, target=target, known_hosts=known_hosts, trusted_file=known_hosts[0])


def _load_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    chosen = path or Path("~/.ssh/config").expanduser()
    if not chosen.is_file():
        if path is not None:
            raise ConfigError(f"ssh_config: {path} does not exist")
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(chosen))
    except (OSError, paramiko.ConfigParseError) as exc:
        raise ConfigError(f"cannot read SSH client config {chosen}: {exc}") from exc


def _endpoint(
    entry: paramiko.SSHConfigDict,
    *,
    port: int | None,
    user: str | None,
    identity: tuple[Path, ...],
) -> Endpoint:
    """One server's settings; the site's ``port``, ``user`` and ``identity`` win over ``entry``."""
    # As ssh does, IdentityFile lines naming no file are passed over (the defaults often are).
    named = (Path(name).expanduser() for name in entry.get("identityfile", []))
    configured = tuple(path for path in named if path.is_file())
    try:
        resolved_port = port or int(entry.get("port", DEFAULT_PORT))
    except ValueError as exc:
        raise ConfigError(f"Port {entry['port']!r} in the SSH client config is no number") from exc
    proxy_command = entry.get("proxycommand")
    return Endpoint(
        hostname=entry["hostname"],
        port=resolved_port,
        user=user or entry.get("user") or getpass.getuser(),
        identity_files=identity or configured,
        # IdentitiesOnly asks ssh to offer only the named keys, not every key in the agent.
        allow_agent=entry.get("identitiesonly", "no").lower() != "yes",
        proxy_command=None if proxy_command in (None, "none") else proxy_command,
    )


def _jumps(
    spec: str | None, ssh_config: paramiko.SSHConfig, identity: tuple[Path, ...], depth: int
) -> tuple[Endpoint, ...]:
    """ProxyJump ``[user@]host[:port],...`` (or ssh:// URIs), each completed from the config.

    As with OpenSSH, only the first jump host's own ProxyJump applies; the later ones are
    reached through the hop before them. The site's identity file serves jump hosts whose
    config entry names no key of its own: a gateway usually takes the same key.
    """
    if not spec or spec.lower() == "none":
        return ()
    if depth > MAX_HOPS:
        raise ConfigError(f"ProxyJump {spec!r}: more than {MAX_HOPS} jump hosts, or a loop")
    hops: list[Endpoint] = []
    for position, word in enumerate(spec.split(",")):
        user, host, port = _parse_jump(word)
        entry = ssh_config.lookup(host)
        if position == 0:
            hops.extend(_jumps(entry.get("proxyjump"), ssh_config, identity, depth + 1))
        hop = _endpoint(entry, port=port, user=user, identity=())
        if not hop.identity_files:
            hop = replace(hop, identity_files=identity)
        hops.append(hop if not hops else replace(hop, proxy_command=None))
    return tuple(hops)


def _parse_jump(word: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]``, ``[user@][v6addr]:port`` or ``ssh://[user@]host[:port]``."""
    text = word.strip().removeprefix("ssh://")
    user, _, rest = text.rpartition("@")
    host, port_text = rest, ""
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    if not host or (port_text and not is_decimal(port_text)):
        raise ConfigError(f"ProxyJump entry {word!r} is not [user@]host[:port]")
    return user or None, host, int(port_text) if port_text else None
