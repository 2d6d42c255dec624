"""The backend a site config asks for: Slurm (its CLI or slurmrestd), PBS, or the local one.
Each is imported only when asked for, so a site loads only its own (and its extras)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError

if TYPE_CHECKING:
    from hpcbridge.backends.base import Backend
    from hpcbridge.site import SiteConfig
    from hpcbridge.transports.base import Transport


def make_backend(site: SiteConfig, transport: Transport) -> Backend:
    """The backend for the site's scheduler kind."""
    if site.scheduler == "slurm" and site.slurm.driver == "rest":
        try:  # httpx is an optional extra: only REST sites load it
            from hpcbridge.backends.slurm.rest import SlurmRestBackend
        except ModuleNotFoundError as exc:
            if exc.name != "httpx":
                raise
            raise ConfigError(
                f"site {site.name} talks to slurmrestd, which needs httpx: "
                "pip install 'hpcbridge[rest]'"
            ) from exc
        return SlurmRestBackend(transport, site.slurm, attempts=site.submit_retries)
    if site.scheduler == "slurm":
        from hpcbridge.backends.slurm import SlurmBackend

        return SlurmBackend(transport, attempts=site.submit_retries)
    if site.scheduler == "pbs":
        from hpcbridge.backends.pbs import PbsBackend

        return PbsBackend(
            transport,
            json_output=site.pbs.json_output,
            job_history=site.pbs.job_history,
            gpu_type_resource=site.pbs.gpu_type_resource,
            attempts=site.submit_retries,
        )
    from hpcbridge.backends.local.backend import LocalBackend

    return LocalBackend(transport, state_dir=site.state_dir, max_running=site.local.max_running)
