"""Client shares on the real test Slurm: ``clients sync`` sets the fairshare sshare shows and
the GrpTRES cpu cap sacctmgr shows, a second sync changes nothing, a max removed removes the
cap (and only the cap), and refusals name the client.

Each test has Slurm accounts of its own (made like the budget tests' accounts), reset to
fairshare 1 and no GrpTRES before and after, so tests running side by side never meet.
physics, chemistry and root are never touched.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from budget_helpers import association_field, slurm_account
from click.testing import CliRunner

from hpcbridge import Cluster, SiteConfig
from hpcbridge.cli.main import main
from hpcbridge.errors import SchedulerError
from hpcbridge.policy.clients import client_standings, sync_shares
from hpcbridge.transports.base import CommandResult
from hpcbridge.transports.local import LocalTransport

pytestmark = pytest.mark.slurm


@pytest.fixture
def accounts(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Two accounts only this test uses: cl<test's second word>1 and ...2."""
    tag = request.node.originalname.split("_")[1]
    names = (slurm_account(f"cl{tag}1"), slurm_account(f"cl{tag}2"))
    _reset(names)
    yield names
    _reset(names)


def _reset(names: Sequence[str]) -> None:
    _set(",".join(names), "fairshare=1", "GrpTRES=cpu=-1,mem=-1", check=False)  # may be so


def _set(names: str, *settings: str, check: bool = True) -> None:
    argv = ["sacctmgr", "-i", "modify", "account", "where", f"name={names}", "set", *settings]
    subprocess.run(argv, capture_output=True, check=check)


def _raw_shares(account: str) -> str:
    """The account's own RawShares as sshare prints them (user lines are indented)."""
    lines = subprocess.run(
        ["sshare", "-A", account, "-o", "Account,RawShares", "-n", "-P"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return next(line.split("|")[1] for line in lines if line.split("|")[0] == account)


def _grp_tres(account: str) -> str:
    """The account association's GrpTRES as sacctmgr shows it ("" when unlimited)."""
    return association_field(account, "grptres")


def _cluster_cores() -> int:
    """Every node's CPUTot from scontrol (not sinfo, which the code under test reads)."""
    text = subprocess.run(
        ["scontrol", "show", "nodes", "--oneliner"], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(word.partition("=")[2]) for word in text.split() if word.startswith("CPUTot="))


def _unused_note() -> list[str]:
    """The note sync and show end with when this Slurm weighs fairshare 0 (the test cluster
    does), read from scontrol here."""
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    weight = next(line for line in config.splitlines() if line.startswith("PriorityWeightFair"))
    if weight.partition("=")[2].strip() != "0":
        return []
    return [
        "note: Slurm weighs fairshare 0 in job priority (PriorityWeightFairShare = 0): the "
        "shares are written but do not order pending jobs; give it a weight in slurm.conf"
    ]


def _site(tmp_path: Path, clients: dict[str, Any]) -> Path:
    """test-slurm with these clients, as a YAML file (the CLI takes paths)."""
    data = SiteConfig.load("test-slurm").model_dump(mode="json", exclude_none=True)
    data["clients"] = clients
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _sync(site: Path, *more: str) -> Any:
    result = CliRunner().invoke(main, ["clients", "sync", "--site", str(site), *more])
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in more else result.output


def test_sync_sets_shares_and_caps_and_a_second_sync_changes_nothing(
    accounts: tuple[str, str], tmp_path: Path
) -> None:
    first, second = accounts
    _set(first, "GrpTRES=mem=1000")  # a limit of the site's own that sync must leave alone
    cap = max(1, _cluster_cores() * 50 // 100)
    site = _site(tmp_path, {first: {"share": 30, "max": 50}, second: {"share": 12.5}})

    started = time.perf_counter()
    output = _sync(site)
    took = time.perf_counter() - started
    assert output.splitlines() == [
        f"{first}: set fairshare=3000 GrpTRES=cpu={cap} (was fairshare 1, no cpu cap)",
        f"{second}: set fairshare=1250 (was fairshare 1, no cpu cap)",
        *_unused_note(),
    ]
    assert (_raw_shares(first), _raw_shares(second)) == ("3000", "1250")
    assert _grp_tres(first) == f"cpu={cap},mem=1000M"
    assert _grp_tres(second) == ""
    assert took < 10, f"clients sync took {took:.2f} s"

    again = _sync(site, "--json")
    assert again["changes"] == []
    assert again["in_place"] == [first, second]
    assert _sync(site).splitlines()[2:] == [
        "nothing to change: every client's fairshare and cap are in place",
        *_unused_note(),
    ]

    without_max = _site(tmp_path, {first: {"share": 30}, second: {"share": 12.5}})
    removed = _sync(without_max, "--json")
    assert [(c["account"], c["settings"]) for c in removed["changes"]] == [
        (first, ["GrpTRES=cpu=-1"])
    ]
    assert _grp_tres(first) == "mem=1000M"
    assert (_raw_shares(first), _raw_shares(second)) == ("3000", "1250")
    assert _sync(without_max, "--json")["changes"] == []


def test_dry_run_says_what_would_change_and_changes_nothing(
    accounts: tuple[str, str], tmp_path: Path
) -> None:
    first, second = accounts
    site = _site(tmp_path, {first: {"share": 20, "max": 25}, second: {"share": 5}})
    planned = _sync(site, "--dry-run", "--json")
    assert planned["dry_run"] is True
    assert [
        (c["account"], c["fairshare"], c["before"]["fairshare"]) for c in planned["changes"]
    ] == [
        (first, 2000, "1"),
        (second, 500, "1"),
    ]
    assert _sync(site, "--dry-run").splitlines()[1] == (
        f"{second}: would set fairshare=500 (was fairshare 1, no cpu cap)"
    )
    assert (_raw_shares(first), _raw_shares(second)) == ("1", "1")
    assert _grp_tres(first) == ""


def test_missing_account_is_refused_naming_the_client_before_any_change(
    accounts: tuple[str, str], tmp_path: Path
) -> None:
    first, _ = accounts
    site = _site(tmp_path, {first: {"share": 20}, "clnosuchaccount": {"share": 10}})
    result = CliRunner().invoke(main, ["clients", "sync", "--site", str(site)])
    assert result.exit_code == 4, result.output
    assert result.output == (
        "error: clients sync: site test-slurm: Slurm has no account for client "
        "clnosuchaccount (sacctmgr add account NAME); nothing changed\n"
    )
    assert _raw_shares(first) == "1"
    shown = CliRunner().invoke(main, ["clients", "show", "--site", str(site)]).output.splitlines()
    assert shown[4].startswith("clnosuchaccount: share 10% (")
    assert shown[5] == "  Slurm now: no such account (sacctmgr add account clnosuchaccount)"


class _GhostAccount:
    """The local transport, except that sacctmgr show lists one more account than Slurm
    has: as when an account is deleted between sync's read and its write."""

    def __init__(self, ghost: str) -> None:
        self.ghost = ghost
        self.local = LocalTransport()

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        result = self.local.run(argv, **kwargs)
        if list(argv[:5]) == ["sacctmgr", "-n", "-P", "show", "assoc"]:
            line = f"hpcbridge|{self.ghost}||1|\n"
            return CommandResult(result.argv, result.returncode, result.stdout + line, "")
        return result

    def close(self) -> None:
        self.local.close()


def test_a_client_sacctmgr_refuses_is_named_with_those_already_written(
    accounts: tuple[str, str],
) -> None:
    first, _ = accounts
    ghost = "clghostaccount"
    data = SiteConfig.load("test-slurm").model_dump(exclude_none=True)
    site = SiteConfig.model_validate(
        data | {"clients": {first: {"share": 20}, ghost: {"share": 5}}}
    )
    with pytest.raises(SchedulerError) as caught:
        sync_shares(Cluster(site, transport=_GhostAccount(ghost)))
    assert str(caught.value) == (
        f"clients sync: client {ghost} (after writing {first}): Slurm has no association for "
        f"account {ghost} (sacctmgr add account {ghost}): Nothing modified"
    )
    assert _raw_shares(first) == "2000"


def test_show_reports_shares_what_slurm_has_and_live_use(
    accounts: tuple[str, str], tmp_path: Path
) -> None:
    first, second = accounts
    site = _site(tmp_path, {first: {"share": 25, "max": 40}, second: {"share": 10}})
    total = _cluster_cores()
    with Cluster.from_site(site) as cluster:
        before = client_standings(cluster)
        sync_shares(cluster)
        after = client_standings(cluster)
    assert before.total_cores == after.total_cores == total
    assert [s.in_place for s in before.standings] == [False, False]
    assert [s.in_place for s in after.standings] == [True, True]
    one, two = after.standings
    assert one.configured is not None
    assert two.configured is not None
    assert (one.configured.fairshare, one.configured.cpu_cap, one.cap) == (
        "2500",
        total * 40 // 100,
        total * 40 // 100,
    )
    assert (two.configured.fairshare, two.configured.cpu_cap, two.cap) == ("1000", None, None)
    assert one.share_cores == pytest.approx(total / 4)
    assert (one.running_cores, one.borrowed_cores) == (0, 0)  # these accounts run nothing

    shown = CliRunner().invoke(main, ["clients", "show", "--site", str(site)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"site test-slurm (slurm): {total} cores, ")
    assert lines[1:4] == [
        f"{first}: share 25% ({total / 4:g} of {total} cores), max 40% ({total * 40 // 100} cores)",
        f"  Slurm now: fairshare 2500, GrpTRES cpu={total * 40 // 100} (in place)",
        "  running: 0 cores (0.0% of the cluster)",
    ]
    assert lines[5] == "  Slurm now: fairshare 1000, no cpu cap (in place)"
    assert lines[7:] == _unused_note()
