"""How a site's scheduler commands are run: here, or on a login node over SSH."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
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

    ``shared_filesystem`` says whether the cluster sees this machine's files at the same paths
    (a laptop's do not): when it is false, the executor stages its call and result files over
    SFTP in folders under ``remote_root``, a folder on the cluster the compute nodes share.
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
    shared_filesystem: bool = True
    remote_root: PurePosixPath | None = None

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

    @model_validator(mode="after")
    def _remote_root_when_not_shared(self) -> SshTransportConfig:
        # The client cannot expand ``~`` or a relative path as the cluster's shell would.
        if self.shared_filesystem:
            if self.remote_root is not None:
                raise ValueError(
                    f"remote_root ({self.remote_root}) is for a filesystem the client does not "
                    "share; leave it out, or set shared_filesystem: false"
                )
        elif self.remote_root is None:
            raise ValueError(
                "remote_root is required when shared_filesystem is false: the absolute path of "
                "a folder on the cluster, shared by its compute nodes, for the executor's files"
            )
        elif not self.remote_root.is_absolute():
            raise ValueError(
                f"remote_root {str(self.remote_root)!r} is not an absolute path on the cluster; "
                "give it from / (~ and relative paths are not expanded)"
            )
        return self

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
