"""Client shares: each client's (account's) guaranteed share of the cluster's cores, written
into the scheduler's own knobs, and what each client's running jobs hold now.

On Slurm a share becomes the account association's fairshare, in hundredths of a percent
(30% -> 3000), so shares keep their exact ratio and an account outside ``clients``, at
Slurm's default fairshare of 1, weighs 0.01%; a ``max`` becomes ``GrpTRES=cpu=M``, M being
that percent of the cluster's cores rounded down (at least 1), so slurmctld keeps the
client's further jobs pending while its running jobs hold M cores. A client without ``max``
has no cap: sync removes any (``GrpTRES=cpu=-1``). Both are written only where they differ
from what sacctmgr shows, so a second sync changes nothing. Fairshare orders pending jobs
only under ``PriorityType=priority/multifactor`` with a non-zero ``PriorityWeightFairShare``;
where Slurm's configuration says otherwise, show and sync say the shares are written but
unused, rather than let a user believe in them.

PBS has no per-account share a client command can set: fairshare is the scheduler's own
configuration on the server host, and its limits (``max_run_res``) name users, groups and
projects, not accounts. There ``clients show`` reports the shares and live use, and
``clients sync`` refuses, naming what the PBS administrator can do instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from hpcbridge.errors import ConfigError, SchedulerError
from hpcbridge.policy.queue import account_queue
from hpcbridge.policy.slurm_limits import (
    Association,
    modify_argv,
    read_associations,
    run_modify,
)

if TYPE_CHECKING:
    from hpcbridge.cluster import Cluster
    from hpcbridge.site import ClientShare, SiteConfig

FAIRSHARE_PER_PERCENT = 100  # fairshare units per percent of the cluster: 0.01% resolution

# sinfo(1) --Node: one line per node and partition it is in ("%N|%c": name, CPUs).
_SINFO_NODES = ["sinfo", "--noheader", "--Node", "--all", "--format=%N|%c"]

PBS_SHARES = (
    "PBS has no per-account share that hpcbridge can set. Fairshare is the PBS scheduler's "
    "own configuration on the server host: the administrator sets 'fair_share: true ALL' and "
    "'fairshare_entity: Account_Name' in sched_priv/sched_config, gives each client its "
    "shares in sched_priv/resource_group ({shares}) and restarts or HUPs pbs_sched. A cap per "
    "account is no PBS limit either: max_run_res.ncpus (set by a PBS manager with qmgr) "
    "limits users, groups, projects (qsub -P) or everyone, not Account_Name"
)


def fairshare(share: float) -> int:
    """Slurm fairshare of a share in percent: hundredths of a percent, at least 1."""
    return max(1, round(Fraction(str(share)) * FAIRSHARE_PER_PERCENT))


def cap_cores(max_percent: float, total_cores: int) -> int:
    """GrpTRES cpu of a ``max``: that percent of the cluster's cores, rounded down, at least 1
    (exact: 57% of 100 cores is 57, never 56.99...)."""
    return max(1, math.floor(Fraction(str(max_percent)) * total_cores / 100))


def share_cores(share: float, total_cores: int) -> float:
    """The cores a share guarantees (may be fractional: 30% of 16 is 4.8)."""
    return float(Fraction(str(share)) * total_cores / 100)


@dataclass(frozen=True)
class Target:
    """What sync writes for one client."""

    account: str
    fairshare: int
    cpu_cap: int | None  # None: no cap


@dataclass(frozen=True)
class Configured:
    """What Slurm has for one account's own association now."""

    fairshare: str  # as sacctmgr prints it: "3000", "parent"
    cpu_cap: int | None  # GrpTRES cpu; None when unset
    uniform: bool = True  # False: the clusters listed (no cluster_name) disagree

    def words(self) -> str:
        cap = f"GrpTRES cpu={self.cpu_cap}" if self.cpu_cap is not None else "no cpu cap"
        differs = " (differs between clusters: set the site's cluster_name)"
        return f"fairshare {self.fairshare}, {cap}{'' if self.uniform else differs}"

    def matches(self, target: Target) -> bool:
        return (
            self.uniform
            and self.fairshare == str(target.fairshare)
            and self.cpu_cap == target.cpu_cap
        )


@dataclass(frozen=True)
class Change:
    """One client's sacctmgr command and what it changes."""

    target: Target
    before: Configured
    argv: tuple[str, ...]

    @property
    def settings(self) -> tuple[str, ...]:
        return self.argv[self.argv.index("set") + 1 :]


def targets(clients: Mapping[str, ClientShare], total_cores: int) -> list[Target]:
    """What every client's association should hold on a cluster of ``total_cores``."""
    return [
        Target(
            account,
            fairshare(client.share),
            None if client.max is None else cap_cores(client.max, total_cores),
        )
        for account, client in clients.items()
    ]


def configured(associations: Sequence[Association]) -> dict[str, Configured]:
    """Each account's own association (user None), merged over the clusters listed."""
    found: dict[str, Configured] = {}
    for association in associations:
        if association.user is not None:
            continue
        cpu = association.grp_tres.get("cpu")
        now = Configured(association.fairshare, int(cpu) if cpu and cpu.isdecimal() else None)
        before = found.get(association.account)
        found[association.account] = (
            now
            if before is None or before == now
            else Configured(now.fairshare, now.cpu_cap, False)
        )
    return found


def plan(
    site: SiteConfig, wanted: Sequence[Target], have: Mapping[str, Configured]
) -> list[Change]:
    """The sacctmgr commands that bring each client's association to its target, only where
    it differs; a client Slurm has no account for is refused before anything changes."""
    missing = [target.account for target in wanted if target.account not in have]
    if missing:
        raise SchedulerError(
            f"clients sync: site {site.name}: Slurm has no account for client "
            f"{', '.join(missing)} (sacctmgr add account NAME); nothing changed"
        )
    changes = []
    for target in wanted:
        before = have[target.account]
        if before.matches(target):
            continue
        settings = []
        if not before.uniform or before.fairshare != str(target.fairshare):
            settings.append(f"fairshare={target.fairshare}")
        if not before.uniform or before.cpu_cap != target.cpu_cap:
            settings.append(f"GrpTRES=cpu={-1 if target.cpu_cap is None else target.cpu_cap}")
        changes.append(Change(target, before, modify_argv(site, target.account, None, settings)))
    return changes


@dataclass(frozen=True)
class SyncResult:
    """What ``clients sync`` did (or, dry, would do)."""

    site: str
    total_cores: int
    changes: tuple[Change, ...]
    in_place: tuple[str, ...]  # clients whose association already matched
    dry_run: bool
    note: str | None = None  # why Slurm would not use the shares (fairshare_note)


def sync_shares(cluster: Cluster, *, dry_run: bool = False) -> SyncResult:
    """Write every client's share (and cap) into Slurm; a second run changes nothing. A
    client sacctmgr refuses is an error naming it and the clients already written."""
    site = cluster.site
    _refuse_other_schedulers(cluster, for_sync=True)
    if not site.clients:
        return SyncResult(site.name, 0, (), (), dry_run)
    total = total_cores(cluster)
    wanted = targets(site.clients, total)
    have = configured(read_associations(cluster, list(site.clients)))
    changes = plan(site, wanted, have)
    done: list[str] = []
    for change in [] if dry_run else changes:
        account = change.target.account
        after = f" (after writing {', '.join(done)})" if done else ""
        run_modify(
            cluster, change.argv, verb=f"clients sync: client {account}{after}", account=account
        )
        done.append(account)
    changed = {change.target.account for change in changes}
    in_place = tuple(target.account for target in wanted if target.account not in changed)
    return SyncResult(site.name, total, tuple(changes), in_place, dry_run, fairshare_note(cluster))


@dataclass(frozen=True)
class Standing:
    """One client's share, what the scheduler has for it, and what it holds now."""

    account: str
    share: float
    max: float | None
    share_cores: float
    cap: int | None  # the cores its max allows (None: no max)
    configured: Configured | None  # None where the scheduler has nothing to show (PBS)
    in_place: bool | None  # configured matches what sync would write (None: PBS)
    running_cores: int

    @property
    def borrowed_cores(self) -> float:
        """Cores held above the guaranteed share: idle share of others, borrowed."""
        return max(0.0, self.running_cores - self.share_cores)


@dataclass(frozen=True)
class SharesReport:
    """``clients show``: the cluster's cores, their use, and every client's standing."""

    site: str
    scheduler: str
    total_cores: int
    busy_cores: int  # held by every account's running jobs
    standings: tuple[Standing, ...]
    note: str | None  # what the scheduler cannot show (PBS) or would not use (Slurm)


def client_standings(cluster: Cluster) -> SharesReport:
    """Every client's share and live use: one node listing, one queue listing and (Slurm)
    one sacctmgr call."""
    site = cluster.site
    _refuse_other_schedulers(cluster, for_sync=False)
    total = total_cores(cluster)
    running: dict[str, int] = {}
    for job in account_queue(cluster):
        if job.running and job.account is not None:
            running[job.account] = running.get(job.account, 0) + job.cores
    have: dict[str, Configured] = {}
    note = None
    slurm = site.scheduler == "slurm"
    if slurm and site.clients:
        have = configured(read_associations(cluster, list(site.clients)))
        note = fairshare_note(cluster)
    elif site.scheduler == "pbs":
        note = PBS_SHARES.format(shares=_share_words(site.clients))
    standings = []
    for target, client in zip(targets(site.clients, total), site.clients.values(), strict=True):
        now = have.get(target.account)
        standings.append(
            Standing(
                account=target.account,
                share=client.share,
                max=client.max,
                share_cores=share_cores(client.share, total),
                cap=target.cpu_cap,
                configured=now,
                in_place=(now is not None and now.matches(target)) if slurm else None,
                running_cores=running.get(target.account, 0),
            )
        )
    return SharesReport(
        site.name, site.scheduler, total, sum(running.values()), tuple(standings), note
    )


def fairshare_note(cluster: Cluster) -> str | None:
    """Why Slurm would not order the queue by the shares (one ``scontrol show config``), or
    None when it does."""
    from hpcbridge.backends.slurm import SlurmBackend, cli

    backend = cluster.backend
    if not isinstance(backend, SlurmBackend):
        return None
    return fairshare_words(backend.commands.run(cli.scontrol_show_config()).stdout)


def fairshare_words(config: str) -> str | None:
    """:func:`fairshare_note` from ``scontrol show config`` ("Name = value" lines)."""
    lines = (line.partition("=") for line in config.splitlines())
    settings = {name.strip(): value.strip() for name, sep, value in lines if sep}
    kind = settings.get("PriorityType", "")
    if kind != "priority/multifactor":
        return (
            f"Slurm's PriorityType is {kind or 'unset'}: the shares are written but do not "
            "order pending jobs (that takes priority/multifactor with PriorityWeightFairShare "
            "above 0 in slurm.conf)"
        )
    if settings.get("PriorityWeightFairShare", "0") == "0":
        return (
            "Slurm weighs fairshare 0 in job priority (PriorityWeightFairShare = 0): the shares "
            "are written but do not order pending jobs; give it a weight in slurm.conf"
        )
    return None


def total_cores(cluster: Cluster) -> int:
    """The cluster's cores, every node counted once whatever its state (so caps do not
    move when a node goes down): ``sinfo --Node`` or ``pbsnodes -av``."""
    from hpcbridge.backends.pbs import PbsBackend
    from hpcbridge.backends.slurm import SlurmBackend

    backend = cluster.backend
    if isinstance(backend, SlurmBackend):
        total = parse_sinfo_nodes(backend.commands.run(_SINFO_NODES).stdout)
    elif isinstance(backend, PbsBackend):
        argv = ["pbsnodes", "-av", *(["-F", "json"] if backend.json_output else [])]
        total = parse_pbsnodes(backend.commands.run(argv).stdout, json=backend.json_output)
    else:
        raise ConfigError(f"site {cluster.site.name}: the {backend.name} backend has no nodes")
    if total <= 0:
        raise SchedulerError(f"site {cluster.site.name}: the scheduler lists no cores")
    return total


def parse_sinfo_nodes(stdout: str) -> int:
    """Cores of :data:`_SINFO_NODES` output, a node listed under several partitions once."""
    cores: dict[str, int] = {}
    for line in stdout.splitlines():
        name, _, cpus = line.strip().partition("|")
        if not name:
            continue
        if not cpus.isdecimal():
            raise SchedulerError(f"expected a node and its CPUs from sinfo: {line!r}")
        cores[name] = int(cpus)
    return sum(cores.values())


def parse_pbsnodes(stdout: str, *, json: bool) -> int:
    """Sum of ``resources_available.ncpus`` in ``pbsnodes -av`` (``-F json`` or text)."""
    if json:
        import json as json_module

        try:
            nodes = json_module.loads(stdout).get("nodes", {})
            return sum(
                int(node.get("resources_available", {}).get("ncpus", 0)) for node in nodes.values()
            )
        except (ValueError, AttributeError, TypeError) as exc:
            raise SchedulerError(f"pbsnodes -F json printed no node list: {exc}") from exc
    total = 0
    for line in stdout.splitlines():
        key, _, value = line.strip().partition(" = ")
        if key == "resources_available.ncpus":
            if not value.isdecimal():
                raise SchedulerError(f"expected a number of cpus from pbsnodes: {line!r}")
            total += int(value)
    return total


def _refuse_other_schedulers(cluster: Cluster, *, for_sync: bool) -> None:
    site = cluster.site
    if site.scheduler == "local":
        raise ConfigError(f"site {site.name}: the local backend has no scheduler shares")
    if site.scheduler == "pbs" and for_sync:
        shares = PBS_SHARES.format(shares=_share_words(site.clients))
        raise ConfigError(
            f"site {site.name}: {shares}; hpcbridge clients show reports each client's share "
            "and live use"
        )


def _share_words(clients: Mapping[str, ClientShare]) -> str:
    if not clients:
        return "this site lists no clients"
    return ", ".join(f"{account} {fairshare(c.share)}" for account, c in clients.items())
