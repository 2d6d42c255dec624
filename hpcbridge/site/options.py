"""What each scheduler (and the embedded local backend) can do, and how the ledger reads a
site's accounting."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hpcbridge.jobs.fields import Token, Walltime
from hpcbridge.site.base import ConfigModel


class PbsOptions(ConfigModel):
    """What a PBS server can do: JSON qstat output (OpenPBS, PBS Pro 19+), job history."""

    json_output: bool = True
    job_history: bool = True
    gpu_type_resource: Token | None = None


class SlurmOptions(ConfigModel):
    """How hpcbridge talks to Slurm: its command-line tools (``cli``, the default), or
    slurmrestd (``rest``) for the calls made most often, without a process per call.

    The REST driver authenticates with a JWT: the one in the ``token_env`` variable if it is
    set (a token the site hands out), else one ``scontrol token`` makes for
    ``token_lifespan`` seconds, renewed shortly before it expires.
    """

    driver: Literal["cli", "rest"] = "cli"
    rest_url: str = Field("http://127.0.0.1:6820", pattern=r"^https?://[^\s/]+(/\S*)?$")
    token_env: str = Field("SLURM_JWT", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_lifespan: int = Field(3600, ge=2)
    rest_timeout: float = Field(30.0, gt=0)


class LocalOptions(ConfigModel):
    """The embedded local backend: ``max_running`` tasks at once (default: one per CPU); the
    rest wait PENDING with reason Resources, as a real scheduler holds jobs it has no room for."""

    max_running: int | None = Field(None, ge=1)


class LedgerOptions(ConfigModel):
    """How ``hpcbridge ledger sync`` reads this cluster's accounting.

    Durations are Slurm-style ("1-00:00:00", "30:00"; a bare number is minutes, as in sbatch;
    the defaults below are in seconds, as Python holds them). ``window`` bounds what one
    sacct call asks slurmdbd for; ``overlap`` re-reads the end of the last sync, for records
    written late; ``first_sync`` is how far back a new ledger starts.
    """

    window: Walltime = 86_400
    overlap: Walltime = 3_600
    first_sync: Walltime = 30 * 86_400
    pbs_source: Literal["log", "qstat"] = "log"
    pbs_accounting_dir: str = "/var/spool/pbs/server_priv/accounting"
    pbs_server_timezone: str | None = None  # the zone PBS's log stamps and file names are in

    @field_validator("pbs_server_timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{name!r} is not an IANA time zone name") from exc
        return name
