"""``hpcbridge budget show``: each budget's allocation, usage, commitment, what is left, the
jobs waiting for it, and when the forecast burn-down says it runs out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError, ForecastError
from hpcbridge.policy.budget import Budget, read_budgets
from hpcbridge.policy.queue import account_queue
from hpcbridge.policy.slurm_limits import reason_words
from hpcbridge.policy.waiting import WaitingJobs, covered, to_release

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger


@dataclass(frozen=True)
class AccountStanding:
    """One account's budgets (its own first, then its limited users) and its waiting jobs."""

    budgets: tuple[Budget, ...]
    waiting: tuple[str, ...]  # held by hpcbridge until budget frees up
    held_by_slurm: tuple[tuple[str, str], ...]  # (job id, why) for association limits
    exhaustion: date | None
    exhaustion_note: str | None  # why there is no date, if there is none


def budget_standings(
    cluster: Cluster, ledger: Ledger, *, account: str | None = None, now: datetime | None = None
) -> list[AccountStanding]:
    """The standing of every budget of the site (or of ``account``), from one queue call."""
    site = cluster.site
    if account is not None and account not in site.budgets.accounts:
        known = ", ".join(site.budgets.accounts) or "none"
        raise ConfigError(
            f"account {account!r} has no budget in site {site.name} (budgets: {known})"
        )
    moment = now or datetime.now(UTC)
    accounts = [account] if account else list(site.budgets.accounts)
    queue = account_queue(cluster, account) if accounts else []
    waiting = WaitingJobs(site.name).records()
    standings = []
    for name in accounts:
        mine = [job for job in queue if job.account == name]
        budgets = read_budgets(
            ledger, site, name, mine, user=None, now=moment, waiting=covered(waiting)
        )
        date_, note = _exhaustion(ledger, name, site.budgets.accounts[name].period, moment)
        standings.append(
            AccountStanding(
                budgets=tuple(budgets),
                waiting=tuple(
                    job
                    for key, record in waiting.items()
                    if record["account"] == name
                    for job in to_release(key, record)
                ),
                held_by_slurm=tuple(
                    (job.job_id, words)
                    for job in mine
                    if (words := reason_words(job.reason)) is not None
                ),
                exhaustion=date_,
                exhaustion_note=note,
            )
        )
    return standings


def _exhaustion(
    ledger: Ledger, account: str, period: str, now: datetime
) -> tuple[date | None, str | None]:
    """The forecast burn-down's exhaustion date (hpcbridge.forecast.usage), or why none."""
    if period == "month":
        return None, "a rolling month is not forecast"
    try:
        from hpcbridge.forecast.usage import budget_burndown

        burn = budget_burndown(ledger, account, as_of=now)
    except ModuleNotFoundError as exc:
        return None, f"forecasts need numpy: pip install 'hpcbridge[forecast]' ({exc.name})"
    except ForecastError as exc:
        return None, str(exc)
    if burn.granted_core_hours is None:
        return None, "no allocation covers now"
    when = burn.exhaustion_forecast or burn.exhaustion_current
    return when, None if when else "not before the allocation ends"
