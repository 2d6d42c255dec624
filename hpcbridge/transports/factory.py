"""The transport a site config asks for: here, or on a login node over SSH."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError

if TYPE_CHECKING:
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports.base import Transport


def make_transport(site: SiteConfig) -> Transport:
    """How the site's scheduler commands are run: here, or on a login node over SSH."""
    config = site.transport
    if config.kind == "local":
        from hpcbridge.transports.local import LocalTransport

        return LocalTransport(config.command_timeout)
    try:  # paramiko is an optional extra, and slow to import: only SSH sites load it
        from hpcbridge.transports.ssh import SshTransport
    except ModuleNotFoundError as exc:
        if exc.name != "paramiko":
            raise
        raise ConfigError(
            f"site {site.name} reaches its cluster over SSH, which needs paramiko: "
            "pip install 'hpcbridge[ssh]'"
        ) from exc
    return SshTransport(config)
