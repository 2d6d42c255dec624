"""How a site's scheduler commands are run: here, or on a login node over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from hpcbridge.site.base import ConfigModel


class LocalTransportConfig(ConfigModel):
    """Run scheduler commands on this machine."""

    kind: Literal["local"] = "local"
    command_timeout: float = Field(120.0, gt=0)


class SshTransportConfig(ConfigModel):
    """Run scheduler commands on a login node over SSH (``pip install 'hpcbridge[ssh]'``).

    Like ``ssh host``: whatever is left out here (port, user, key, jump host) comes from
    ``~/.ssh/config`` for ``host``. Host keys are checked against ``known_hosts``; an unknown
    host is refused unless ``host_key_policy`` is ``accept-new`` (trust on first use). There
    is no password field on purpose: log in with a key file or ssh-agent.
    """

    kind: Literal["ssh"]
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    host_key_policy: Literal["reject", "accept-new"] = "reject"
    proxy_jump: str | None = None
    ssh_config: Path | None = None
    connect_timeout: float = Field(15.0, gt=0)
    command_timeout: float = Field(120.0, gt=0)
    keepalive_interval: int = Field(30, ge=0)
    # What one command may print (stdout and stderr together) before it is stopped: a login
    # node's memory is shared, and a runaway squeue or sacct would otherwise take it all.
    max_output_mb: int = Field(256, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_passwords(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"password", "passphrase"} & data.keys():
            raise ValueError(
                "passwords are never stored in site configs; log in with a key "
                "(identity_file, or IdentityFile in ~/.ssh/config) or through ssh-agent"
            )
        return data

    @field_validator("host")
    @classmethod
    def _host_alone(cls, host: str) -> str:
        if "@" in host or any(char.isspace() for char in host):
            raise ValueError(f"{host!r} is not a host name; give the user as `user:`")
        return host

    @field_validator("identity_file", "known_hosts", "ssh_config")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()


def _transport_kind(data: Any) -> str:
    """``kind`` picks the transport; configs written before SSH existed may leave it out."""
    if isinstance(data, dict):
        return str(data.get("kind", "local"))
    return str(getattr(data, "kind", "local"))


TransportConfig = Annotated[
    Annotated[LocalTransportConfig, Tag("local")] | Annotated[SshTransportConfig, Tag("ssh")],
    Discriminator(_transport_kind),
]
