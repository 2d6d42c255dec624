"""Budgets per account (and per user in it), and the shares guaranteed to clients."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hpcbridge.jobs.fields import Token
from hpcbridge.site.base import ConfigModel


class BudgetLimit(ConfigModel):
    """Core-hours and GPU-hours one user of an account may use per period (None: no limit)."""

    core_hours: float | None = Field(None, ge=0)
    gpu_hours: float | None = Field(None, ge=0)


class AccountBudget(BudgetLimit):
    """One account's budget: the ledger's allocation covering now (``period: allocation``,
    raised with ``hpcbridge budget allocate``), or ``core_hours``/``gpu_hours`` per rolling
    month (``period: month``, the last 30 days); ``users`` limit single users within it."""

    period: Literal["allocation", "month"] = "allocation"
    users: dict[Token, BudgetLimit] = {}

    @model_validator(mode="after")
    def _limit_from_one_place(self) -> AccountBudget:
        given = self.core_hours is not None or self.gpu_hours is not None
        if self.period == "allocation" and given:
            raise ValueError(
                "core_hours/gpu_hours: with period allocation the limit is the ledger's "
                "allocation; give them with period: month, or leave them out"
            )
        if self.period == "month" and not given:
            raise ValueError("period month needs core_hours and/or gpu_hours")
        return self


class BudgetOptions(ConfigModel):
    """Budgets checked at submit (hpcbridge.policy.budget): a job whose worst case, with what
    the account's queued and running jobs have committed, exceeds what is left is refused,
    or with ``on_exhausted: hold`` submitted held until ``hpcbridge budget release`` finds
    room; a warning once ``warn_at`` percent would be used."""

    accounts: dict[Token, AccountBudget] = {}
    on_exhausted: Literal["refuse", "hold"] = "refuse"
    warn_at: float = Field(80.0, gt=0, le=100)


class ClientShare(ConfigModel):
    """A client's (an account's) guaranteed ``share`` of the cluster's cores, in percent; idle
    share may be borrowed by others, and this client may use up to ``max`` percent (None: as
    much as is idle)."""

    share: float = Field(gt=0, le=100)
    max: float | None = Field(None, gt=0, le=100)

    @model_validator(mode="after")
    def _max_covers_share(self) -> ClientShare:
        if self.max is not None and self.max < self.share:
            raise ValueError(f"max ({self.max:g}) is below the guaranteed share ({self.share:g})")
        return self
