"""Client shares, the pure part: a share as Slurm fairshare, a max as a GrpTRES cpu cap, what
sacctmgr and the node listings print read back, and the plan that changes only what differs.
The PBS node listings are the real OpenPBS captures (the ``pbs_reference`` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcbridge.errors import SchedulerError
from hpcbridge.policy.clients import (
    Configured,
    Standing,
    Target,
    cap_cores,
    configured,
    fairshare,
    fairshare_words,
    parse_pbsnodes,
    parse_sinfo_nodes,
    plan,
    share_cores,
    targets,
)
from hpcbridge.policy.slurm_limits import parse_associations
from hpcbridge.site import ClientShare, SiteConfig


@pytest.mark.parametrize(
    ("share", "units"), [(30, 3000), (12.5, 1250), (33.33, 3333), (0.001, 1), (100, 10000)]
)
def test_a_share_is_fairshare_in_hundredths_of_a_percent(share: float, units: int) -> None:
    assert fairshare(share) == units


@pytest.mark.parametrize(
    ("percent", "total", "cores"),
    [
        (50, 16, 8),
        (30, 16, 4),  # 4.8, rounded down
        (57, 100, 57),  # exact: 0.57 * 100 is 56.99999999999999 in floating point
        (1, 16, 1),  # 0.16 rounds down to 0: at least 1
        (100, 16, 16),
        (12.5, 8, 1),
    ],
)
def test_a_max_is_that_percent_of_the_cores_rounded_down(
    percent: float, total: int, cores: int
) -> None:
    assert cap_cores(percent, total) == cores


def test_a_share_guarantees_fractional_cores_and_borrowing_is_what_lies_above() -> None:
    assert share_cores(30, 16) == pytest.approx(4.8)
    standing = Standing("render", 30, None, 4.8, None, None, None, running_cores=7)
    assert standing.borrowed_cores == pytest.approx(2.2)
    assert Standing("anim", 30, None, 4.8, None, None, None, running_cores=3).borrowed_cores == 0


def test_targets_follow_the_site_clients() -> None:
    clients = {"render": ClientShare(share=30, max=50), "anim": ClientShare(share=20)}
    assert targets(clients, 16) == [Target("render", 3000, 8), Target("anim", 2000, None)]


SACCTMGR = """\
hpcbridge|render||3000|cpu=8,mem=1000M
hpcbridge|render|alice|1|cpu=2
hpcbridge|anim||parent|
"""


def test_associations_read_back_with_their_own_fields() -> None:
    found = parse_associations(SACCTMGR)
    assert [(a.account, a.user, a.fairshare) for a in found] == [
        ("render", None, "3000"),
        ("render", "alice", "1"),
        ("anim", None, "parent"),
    ]
    assert found[0].grp_tres == {"cpu": "8", "mem": "1000M"}
    assert found[2].grp_tres == {}
    with pytest.raises(SchedulerError, match="expected 5 fields from sacctmgr"):
        parse_associations("render|3000\n")


def test_configured_is_each_accounts_own_association() -> None:
    have = configured(parse_associations(SACCTMGR))
    assert have == {"render": Configured("3000", 8), "anim": Configured("parent", None)}


def test_clusters_that_disagree_are_not_in_place() -> None:
    two = parse_associations("a|render||3000|cpu=8\nb|render||1|\n")
    (render,) = configured(two).values()
    assert not render.uniform
    assert not render.matches(Target("render", 3000, 8))
    assert "differs between clusters" in render.words()


SITE = SiteConfig.model_validate({"name": "s", "scheduler": "slurm", "cluster_name": "c1"})


def test_plan_changes_only_what_differs() -> None:
    wanted = [Target("render", 3000, 8), Target("anim", 2000, None), Target("fx", 1000, 4)]
    have = {
        "render": Configured("3000", 8),  # in place
        "anim": Configured("2000", 4),  # max gone: the cap goes
        "fx": Configured("1", 4),  # only the fairshare differs
    }
    changes = plan(SITE, wanted, have)
    assert [(c.target.account, c.settings) for c in changes] == [
        ("anim", ("GrpTRES=cpu=-1",)),
        ("fx", ("fairshare=1000",)),
    ]
    assert changes[0].argv == (
        "sacctmgr",
        "-i",
        "modify",
        "account",
        "where",
        "name=anim",
        "cluster=c1",
        "set",
        "GrpTRES=cpu=-1",
    )


def test_plan_writes_both_where_clusters_disagree() -> None:
    have = {"render": Configured("3000", 8, uniform=False)}
    (change,) = plan(SITE, [Target("render", 3000, 8)], have)
    assert change.settings == ("fairshare=3000", "GrpTRES=cpu=8")


def test_plan_refuses_clients_slurm_lacks_before_changing_anything() -> None:
    wanted = [Target("render", 3000, 8), Target("ghost", 10, None), Target("gone", 10, None)]
    with pytest.raises(SchedulerError) as caught:
        plan(SITE, wanted, {"render": Configured("1", None)})
    assert str(caught.value) == (
        "clients sync: site s: Slurm has no account for client ghost, gone "
        "(sacctmgr add account NAME); nothing changed"
    )


def test_sinfo_counts_a_node_in_several_partitions_once() -> None:
    assert parse_sinfo_nodes("vm|16\nvm|16\nn2|8\n\n") == 24
    with pytest.raises(SchedulerError, match="expected a node and its CPUs"):
        parse_sinfo_nodes("vm|N/A\n")


def test_pbsnodes_cores_from_the_real_captures(pbs_reference: Path) -> None:
    text = (pbs_reference / "pbsnodes-av.txt").read_text()
    document = (pbs_reference / "pbsnodes-av-F-json.json").read_text()
    assert parse_pbsnodes(text, json=False) == 2
    assert parse_pbsnodes(document, json=True) == 2
    with pytest.raises(SchedulerError, match="pbsnodes -F json printed no node list"):
        parse_pbsnodes("[]", json=True)


def test_shares_slurm_would_not_use_are_said_to_be_unused() -> None:
    multifactor = "PriorityType            = priority/multifactor\n"
    assert fairshare_words(multifactor + "PriorityWeightFairShare = 10000\n") is None
    assert fairshare_words(multifactor + "PriorityWeightFairShare = 0\n") == (
        "Slurm weighs fairshare 0 in job priority (PriorityWeightFairShare = 0): the shares "
        "are written but do not order pending jobs; give it a weight in slurm.conf"
    )
    basic = fairshare_words("PriorityType = priority/basic\nPriorityWeightFairShare = 5\n")
    assert basic is not None
    assert basic.startswith("Slurm's PriorityType is priority/basic: the shares are written")
