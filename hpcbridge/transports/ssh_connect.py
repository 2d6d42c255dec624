"""Logging in over SSH: host keys checked, keys or ssh-agent, through any jump hosts.

Every paramiko error is turned into an hpcbridge error here, and the split matters to the
retry logic: a refused or changed host key and a failed login are permanent (a retry would
fail the same way, and the message says what to fix), while a host that cannot be reached
right now is ``TransportUnavailable``, which callers may retry.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import paramiko

from hpcbridge.errors import TransportError, TransportUnavailable
from hpcbridge.transports.ssh_route import DEFAULT_PORT, Endpoint, Route

log = logging.getLogger(__name__)

# RFC 4254 section 5.1: the server will not forward (AllowTcpForwarding no, PermitOpen).
_OPEN_ADMINISTRATIVELY_PROHIBITED = 1


class Connection:
    """A logged-in session on the login node, plus the jump-host sessions it runs through."""

    def __init__(self, clients: Sequence[paramiko.SSHClient], target: Endpoint) -> None:
        self._clients = list(clients)
        self.target = target
        transport = self._clients[-1].get_transport()
        if transport is None:  # connect() returned, so paramiko made one
            raise TransportUnavailable(f"the SSH session to {target} closed while logging in")
        self.transport = transport
        self._sftp: paramiko.SFTPClient | None = None

    def is_active(self) -> bool:
        """False once the login node's session, or any jump host's under it, has dropped."""
        return self.transport.is_active()

    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session on this connection, opened on first use and then kept."""
        if self._sftp is None or not self.sftp_open():
            self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            if self._sftp is None:
                raise TransportUnavailable(f"{self.target} did not start its SFTP server")
        return self._sftp

    def sftp_open(self) -> bool:
        """The SFTP session still stands: an error from it was the server's answer."""
        channel = self._sftp.get_channel() if self._sftp is not None else None
        return channel is not None and not channel.closed

    def close(self) -> None:
        """Log out of the login node first, then out of each jump host.

        The connection may already be dead (that is often why it is closed), so saying
        goodbye over it may fail; the sockets are released all the same.
        """
        if self._sftp is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._sftp.close()
        for client in reversed(self._clients):
            client.close()


def connect(route: Route, *, policy: str, timeout: float, keepalive: int) -> Connection:
    """Log in to every hop of ``route`` in turn, each through the one before it."""
    clients: list[paramiko.SSHClient] = []
    try:
        for index, hop in enumerate(route.hops):
            sock = _tunnel(clients[-1], route.hops[index - 1], hop, timeout) if clients else None
            client = _login(hop, route, policy=policy, timeout=timeout, sock=sock)
            clients.append(client)
            transport = client.get_transport()
            if transport is not None and keepalive:
                transport.set_keepalive(keepalive)
    except BaseException:
        for client in reversed(clients):
            client.close()
        raise
    return Connection(clients, route.target)


def _login(
    hop: Endpoint,
    route: Route,
    *,
    policy: str,
    timeout: float,
    sock: paramiko.Channel | None,
) -> paramiko.SSHClient:
    """Log in to one hop; ``sock`` is the tunnel from the hop before, if any."""
    client = paramiko.SSHClient()
    for path in route.known_hosts:
        _load_known_hosts(client.get_host_keys(), path)
    trusted = route.trusted_file
    client.set_missing_host_key_policy(
        _TrustOnFirstUse(trusted) if policy == "accept-new" else _RefuseUnknown(hop, route)
    )
    channel: paramiko.Channel | paramiko.ProxyCommand | socket.socket
    if sock is not None:
        channel = sock
    elif hop.proxy_command:
        channel = paramiko.ProxyCommand(hop.proxy_command)
    else:
        channel = _dial(hop, timeout)
    try:
        client.connect(
            hop.hostname,
            hop.port,
            username=hop.user,
            # paramiko takes a list of key files (see its docs); types-paramiko says str.
            key_filename=[str(path) for path in hop.identity_files] or None,  # type: ignore[arg-type]
            # Like ssh: the default keys (~/.ssh/id_*) only when no IdentityFile is named.
            look_for_keys=not hop.identity_files,
            allow_agent=hop.allow_agent,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            sock=channel,
        )
    except TransportError:  # raised by a host key policy below
        client.close()
        raise
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        raise _login_error(hop, route, exc) from exc
    log.debug("logged in to %s", hop)
    return client


def _load_known_hosts(keys: paramiko.HostKeys, path: Path) -> None:
    """Add the keys in one known_hosts file, hashed names included, as ssh reads it.

    paramiko's own loader gives up on the first line it cannot parse, losing every entry
    after it; ssh passes such lines over, and so does this. ``@cert-authority`` and
    ``@revoked`` lines are passed over too: paramiko checks neither.
    """
    if not path.is_file():
        return
    try:
        lines = path.read_text().split("\n")
    except OSError as exc:
        raise TransportError(f"cannot read known_hosts file {path}: {exc}") from exc
    for number, text in enumerate(lines, 1):
        line = text.strip()
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey):
            entry = None
        if entry is None or entry.key is None:
            log.warning("%s line %d is not a host key entry; passed over", path, number)
            continue
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)


def _dial(hop: Endpoint, timeout: float) -> socket.socket:
    """A TCP connection to ``hop``, with Nagle's algorithm off.

    Each command is a few small packets, each waiting for the answer to the one before;
    with Nagle on, every round trip can stall on a delayed ACK (about 40 ms on Linux
    loopback, measured: 48 ms per command instead of 6).
    """
    try:
        sock = socket.create_connection((hop.hostname, hop.port), timeout=timeout)
    except socket.gaierror as exc:
        raise TransportError(f"cannot connect to {hop}: unknown host ({exc.strerror})") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise TransportUnavailable(f"cannot connect to {hop}: {reason}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def _login_error(
    hop: Endpoint, route: Route, exc: OSError | EOFError | paramiko.SSHException
) -> TransportError:
    if isinstance(exc, paramiko.BadHostKeyException):
        return TransportError(_changed_key_message(hop, route, exc))
    if isinstance(exc, paramiko.PasswordRequiredException):
        keys = ", ".join(str(path) for path in hop.identity_files) or "your default key"
        return TransportError(
            f"cannot log in to {hop}: the key {keys} is protected by a passphrase, and "
            f"hpcbridge never asks for one; load it into ssh-agent first (ssh-add {keys})"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return TransportError(_auth_message(hop, exc))
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return TransportUnavailable(f"cannot connect to {hop}: {reason}")


def _tunnel(
    via: paramiko.SSHClient, via_hop: Endpoint, hop: Endpoint, timeout: float
) -> paramiko.Channel:
    """A direct-tcpip channel from a jump host to the next hop, as ``ssh -J`` opens."""
    transport = via.get_transport()
    if transport is None or not transport.is_active():
        raise TransportUnavailable(f"the session on jump host {via_hop} dropped")
    where = f"jump host {via_hop} could not connect to {hop.hostname}:{hop.port}"
    try:
        return transport.open_channel(
            "direct-tcpip", (hop.hostname, hop.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as exc:
        if exc.code == _OPEN_ADMINISTRATIVELY_PROHIBITED:
            raise TransportError(
                f"{where}: it does not allow forwarding (AllowTcpForwarding/PermitOpen in "
                "its sshd_config)"
            ) from exc
        raise TransportUnavailable(f"{where}: {exc.text}") from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise TransportUnavailable(f"{where}: {exc}") from exc


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _keyscan(hop: Endpoint) -> str:
    port = "" if hop.port == DEFAULT_PORT else f"-p {hop.port} "
    return f"ssh-keyscan {port}{hop.hostname}"


def _files(paths: Sequence[Path]) -> str:
    return ", ".join(str(path) for path in paths)


def _changed_key_message(hop: Endpoint, route: Route, exc: paramiko.BadHostKeyException) -> str:
    name = hop.known_hosts_name
    return (
        f"the host key of {name} has CHANGED: known_hosts ({_files(route.known_hosts)}) holds "
        f"{_fingerprint(exc.expected_key)}, the server offered {_fingerprint(exc.key)}. Someone "
        "may be intercepting the connection, or the host was reinstalled: ask the cluster's "
        "admins. Once they confirm the new key, remove the old one with "
        f"`ssh-keygen -R '{name}' -f {route.trusted_file}` and trust the new one with "
        f"`{_keyscan(hop)} >> {route.trusted_file}`"
    )


def _auth_message(hop: Endpoint, exc: paramiko.AuthenticationException) -> str:
    tried = [f"key file {path}" for path in hop.identity_files]
    if not hop.identity_files:
        tried.append("the default keys in ~/.ssh")
    if hop.allow_agent:
        tried.append("ssh-agent")
    return (
        f"cannot log in to {hop}: the server refused {', '.join(tried)} ({exc}). Put your "
        f"public key in ~{hop.user}/.ssh/authorized_keys there, name your key with "
        "identity_file in the site config (or IdentityFile in ~/.ssh/config), or add it to "
        "ssh-agent. Passwords are not supported"
    )


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """The default: a host whose key is in no known_hosts file is not logged in to."""

    def __init__(self, hop: Endpoint, route: Route) -> None:
        self.hop = hop
        self.route = route

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        """Refuse, saying how to check and trust the key."""
        trusted = self.route.trusted_file
        raise TransportError(
            f"unknown host {hostname}: its key ({_fingerprint(key)}) is not in known_hosts "
            f"({_files(self.route.known_hosts)}), and hpcbridge does not log in to unknown "
            "hosts. Check the fingerprint with the cluster's admins, then trust it with "
            f"`{_keyscan(self.hop)} >> {trusted}` (or log in once with ssh), or set "
            "`host_key_policy: accept-new` in the site config to trust a new host on first use"
        )


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """``host_key_policy: accept-new``: record an unknown host's key, as OpenSSH does.

    A key that differs from a recorded one is still refused (paramiko raises
    BadHostKeyException before asking a policy). The line is appended, so the user's
    known_hosts keeps its comments, order and hashed entries.
    """

    def __init__(self, trusted_file: Path) -> None:
        self.trusted_file = trusted_file

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        """Append the key to the known_hosts file and accept it."""
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        try:
            self.trusted_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self.trusted_file.open("a") as known_hosts:
                known_hosts.write(line)
        except OSError as exc:
            raise TransportError(
                f"cannot record the host key of {hostname} in {self.trusted_file}: {exc}"
            ) from exc
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "trusting %s on first use: added its key %s to %s",
            hostname,
            _fingerprint(key),
            self.trusted_file,
        )
