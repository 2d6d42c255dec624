"""``hpcbridge budget sync``: the site's budgets written into Slurm as association limits.

``sacctmgr -i modify account|user ... set GrpTRESMins=cpu=N,gres/gpu=M`` (minutes; -1 clears
a limit), so slurmctld itself keeps an account's jobs pending once its usage reaches the
limit, whoever submits them and however. What Slurm counts against GrpTRESMins is the
association's raw usage since its last reset (``PriorityUsageResetPeriod``, decayed by
``PriorityDecayHalfLife``), not the ledger's: set the reset to the grant period. PBS has no
association limits; there budgets are hpcbridge's check at submit alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError, SchedulerError
from hpcbridge.policy.budget import Budget, read_budgets

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger

# slurm.h job_state_reason, as squeue prints them (src/common/slurm_protocol_defs.c,
# job_reason_string, Slurm 22.05): the association limits budget sync sets.
LIMIT_REASONS = {
    "AssocGrpCPUMinutesLimit": "the account's core-hour budget in Slurm (GrpTRESMins cpu) "
    "is used up",
    "AssocGrpGRESMinutes": "the account's GPU-hour budget in Slurm (GrpTRESMins gres/gpu) "
    "is used up",
    "AssocGrpCPURunMinutesLimit": "the account's running jobs hold all of its core-minutes "
    "(GrpTRESRunMins cpu)",
    "AssocGrpGRESRunMinutes": "the account's running jobs hold all of its GPU-minutes "
    "(GrpTRESRunMins gres/gpu)",
}


def reason_words(reason: str | None) -> str | None:
    """A budget limit's pending reason in words (naming Slurm's own); None for others."""
    if reason not in LIMIT_REASONS:
        return None
    return f"{LIMIT_REASONS[reason]} ({reason}); raise it with hpcbridge budget sync"


@dataclass(frozen=True)
class WrittenLimit:
    """One association and the GrpTRESMins written to it."""

    account: str
    user: str | None
    tres_minutes: str  # "cpu=60000,gres/gpu=-1"
    argv: tuple[str, ...]


def limit_commands(
    cluster: Cluster, ledger: Ledger, *, now: datetime | None = None
) -> list[WrittenLimit]:
    """The sacctmgr command of every budget of the site: its account and limited users."""
    site = cluster.site
    if site.scheduler != "slurm":
        raise ConfigError(
            f"site {site.name}: {site.scheduler} has no association limits; budgets there are "
            "hpcbridge's check at submit alone (hpcbridge submit --ledger ...)"
        )
    moment = now or datetime.now(UTC)
    written = []
    for account in site.budgets.accounts:
        for budget in read_budgets(ledger, site, account, [], user=None, now=moment):
            tres = _tres_minutes(budget)
            where = ["account" if budget.user is None else "user", "where"]
            where.append(f"name={budget.user or account}")
            if budget.user is not None:
                where.append(f"account={account}")
            if site.cluster_name:
                where.append(f"cluster={site.cluster_name}")
            argv = ("sacctmgr", "-i", "modify", *where, "set", f"GrpTRESMins={tres}")
            written.append(WrittenLimit(account, budget.user, tres, argv))
    return written


def sync_limits(
    cluster: Cluster, ledger: Ledger, *, now: datetime | None = None
) -> list[WrittenLimit]:
    """Write every budget's limits into slurmdbd; an association Slurm lacks is an error
    naming it (sacctmgr says "Nothing modified")."""
    from hpcbridge.backends.slurm import SlurmBackend

    limits = limit_commands(cluster, ledger, now=now)
    backend = cluster.backend
    if not isinstance(backend, SlurmBackend):  # pragma: no cover - limit_commands refused
        raise ConfigError(f"site {cluster.site.name} is not driven by the Slurm backend")
    for limit in limits:
        try:
            backend.commands.run(list(limit.argv))
        except SchedulerError as exc:
            who = f"user {limit.user} in account" if limit.user else "account"
            raise SchedulerError(
                f"budget sync: Slurm has no association for {who} {limit.account} "
                f"(sacctmgr add {'user ' + limit.user + ' account=' if limit.user else 'account '}"
                f"{limit.account})"
                if "Nothing modified" in exc.stderr
                else f"budget sync: {' '.join(limit.argv)} failed",
                argv=exc.argv,
                returncode=exc.returncode,
                stderr=exc.stderr,
            ) from exc
    return limits


def _tres_minutes(budget: Budget) -> str:
    """GrpTRESMins of a budget: its limit in minutes, rounded down; -1 where unlimited."""
    limit = budget.limit
    cpu = int(limit.core_hours * 60) if limit is not None and budget.limits_cores else -1
    gpu = int(limit.gpu_hours * 60) if limit is not None and budget.limits_gpu else -1
    if limit is None:  # no allocation covers now: nothing may run
        cpu, gpu = 0, 0
    return f"cpu={max(cpu, -1)},gres/gpu={max(gpu, -1)}"
