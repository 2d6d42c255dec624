"""The electricity tariff that off-peak starts and energy reports price runs with."""

from __future__ import annotations

from pydantic import Field, field_validator

from hpcbridge.site.base import ConfigModel


class TariffWindow(ConfigModel):
    """A stretch of the day (``start`` to ``end``, HH:MM on the tariff's clock; past midnight
    when end is earlier) at ``price`` per kWh."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    price: float = Field(ge=0)


class EnergyOptions(ConfigModel):
    """What power costs, for ``begin: cheapest`` and energy estimates: ``price`` per kWh
    outside the ``windows`` (off-peak hours and the like, on the ``timezone``'s clock), and
    the power of a busy core and GPU, which estimates a job's energy where the cluster does
    not measure it."""

    price: float = Field(0.0, ge=0)
    windows: list[TariffWindow] = []
    currency: str = "EUR"
    timezone: str = "UTC"
    watts_per_core: float = Field(10.0, ge=0)
    watts_per_gpu: float = Field(300.0, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{name!r} is not an IANA time zone name") from exc
        return name
