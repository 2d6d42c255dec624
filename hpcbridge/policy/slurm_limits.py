"""Slurm associations read and written with sacctmgr: ``hpcbridge budget sync`` (the site's
budgets as association limits) and the one way of reading and modifying an account's
association that ``clients sync`` shares with it.

``sacctmgr -i modify account|user ... set GrpTRESMins=cpu=N,gres/gpu=M`` (minutes; -1 clears
a limit), so slurmctld itself keeps an account's jobs pending once its usage reaches the
limit, whoever submits them and however. What Slurm counts against GrpTRESMins is the
association's raw usage since its last reset (``PriorityUsageResetPeriod``, decayed by
``PriorityDecayHalfLife``), not the ledger's: set the reset to the grant period. PBS has no
association limits; there budgets are hpcbridge's check at submit alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError, SchedulerError

if TYPE_CHECKING:
    from hpcbridge.backends.commands import SchedulerCommands
    from hpcbridge.cluster import Cluster
    from hpcbridge.ledger.store import Ledger
    from hpcbridge.policy.budget import Budget
    from hpcbridge.site import SiteConfig

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
    from hpcbridge.policy.budget import read_budgets  # the ledger: clients sync needs none

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
            argv = modify_argv(site, account, budget.user, [f"GrpTRESMins={tres}"])
            written.append(WrittenLimit(account, budget.user, tres, argv))
    return written


def sync_limits(
    cluster: Cluster, ledger: Ledger, *, now: datetime | None = None
) -> list[WrittenLimit]:
    """Write every budget's limits into slurmdbd; an association Slurm lacks is an error
    naming it (sacctmgr says "Nothing modified")."""
    limits = limit_commands(cluster, ledger, now=now)
    for limit in limits:
        run_modify(cluster, limit.argv, verb="budget sync", account=limit.account, user=limit.user)
    return limits


@dataclass(frozen=True)
class Association:
    """One association as ``sacctmgr show assoc`` lists it (user None: the account's own)."""

    cluster: str
    account: str
    user: str | None
    fairshare: str  # "1", "3000", "parent"
    grp_tres: Mapping[str, str]  # {"cpu": "8", "mem": "1000M"}; empty when unlimited


# sacctmgr show assoc format= fields, in the order parse_associations reads them.
_ASSOC_FIELDS = ("cluster", "account", "user", "fairshare", "grptres")


def show_associations_argv(site: SiteConfig, accounts: Sequence[str]) -> list[str]:
    """``sacctmgr show assoc`` of ``accounts`` (every user's and the account's own), one call."""
    where = [f"account={','.join(accounts)}"]
    if site.cluster_name:
        where.append(f"cluster={site.cluster_name}")
    return [
        "sacctmgr",
        "-n",
        "-P",
        "show",
        "assoc",
        "where",
        *where,
        f"format={','.join(_ASSOC_FIELDS)}",
    ]


def parse_associations(stdout: str) -> list[Association]:
    """Lines of :func:`show_associations_argv` (``-P``: fields split by ``|``)."""
    found = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < len(_ASSOC_FIELDS):
            raise SchedulerError(f"expected {len(_ASSOC_FIELDS)} fields from sacctmgr: {line!r}")
        cluster, account, user, fairshare, tres = fields[: len(_ASSOC_FIELDS)]
        pairs = (item.partition("=") for item in tres.split(",") if item)
        found.append(
            Association(cluster, account, user or None, fairshare, {k: v for k, _, v in pairs})
        )
    return found


def read_associations(cluster: Cluster, accounts: Sequence[str]) -> list[Association]:
    """The associations of ``accounts`` on the site's cluster (all clusters without
    ``cluster_name``); an account Slurm lacks is simply absent."""
    result = _sacctmgr(cluster).run(show_associations_argv(cluster.site, accounts))
    return parse_associations(result.stdout)


def modify_argv(
    site: SiteConfig, account: str, user: str | None, settings: Sequence[str]
) -> tuple[str, ...]:
    """``sacctmgr -i modify account|user where ... set SETTINGS`` for one association: the
    account's own (``user`` None) or a user's in it, on the site's cluster."""
    where = ["account" if user is None else "user", "where", f"name={user or account}"]
    if user is not None:
        where.append(f"account={account}")
    if site.cluster_name:
        where.append(f"cluster={site.cluster_name}")
    return ("sacctmgr", "-i", "modify", *where, "set", *settings)


def run_modify(
    cluster: Cluster, argv: Sequence[str], *, verb: str, account: str, user: str | None = None
) -> None:
    """Run one :func:`modify_argv` command; a refusal names the association and what ``verb``
    was doing (an association Slurm lacks: sacctmgr says "Nothing modified")."""
    try:
        _sacctmgr(cluster).run(list(argv))
    except SchedulerError as exc:
        who = f"user {user} in account" if user else "account"
        add = f"user {user} account={account}" if user else f"account {account}"
        raise type(exc)(
            f"{verb}: Slurm has no association for {who} {account} (sacctmgr add {add})"
            if "Nothing modified" in exc.stderr
            else f"{verb}: {' '.join(argv)} failed",
            argv=exc.argv,
            returncode=exc.returncode,
            stderr=exc.stderr,
        ) from exc


def _sacctmgr(cluster: Cluster) -> SchedulerCommands:
    """The Slurm backend's commands, which run sacctmgr with its retries and error wording."""
    from hpcbridge.backends.slurm import SlurmBackend

    backend = cluster.backend
    if not isinstance(backend, SlurmBackend):
        raise ConfigError(f"site {cluster.site.name} is not driven by the Slurm backend")
    return backend.commands


def _tres_minutes(budget: Budget) -> str:
    """GrpTRESMins of a budget: its limit in minutes, rounded down; -1 where unlimited."""
    limit = budget.limit
    cpu = int(limit.core_hours * 60) if limit is not None and budget.limits_cores else -1
    gpu = int(limit.gpu_hours * 60) if limit is not None and budget.limits_gpu else -1
    if limit is None:  # no allocation covers now: nothing may run
        cpu, gpu = 0, 0
    return f"cpu={max(cpu, -1)},gres/gpu={max(gpu, -1)}"
