"""Client shares on the PBS emulator: ``clients show`` counts the cores each client's running
jobs hold against pbsnodes' total (with what it borrows above its share), and says what PBS
cannot show; ``clients sync`` refuses, naming what the PBS administrator can do instead."""

from __future__ import annotations

import pytest
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobSpec, SiteConfig
from hpcbridge.errors import ConfigError
from hpcbridge.policy.clients import client_standings, sync_shares

pytestmark = pytest.mark.timeout(120)

CLIENTS = {"physics": {"share": 25, "max": 50}, "chemistry": {"share": 10}}


def _cluster(json_output: bool) -> Cluster:
    base = SiteConfig.load("test-pbs").model_dump(exclude_none=True)
    pbs = base["pbs"] | {"json_output": json_output}
    return Cluster(SiteConfig.model_validate(base | {"clients": CLIENTS, "pbs": pbs}))


def _job(account: str, cores: int) -> JobSpec:
    return JobSpec.parse(
        {
            "name": f"share-{account}",
            "command": "sleep 60",
            "account": account,
            "resources": {"ntasks": cores, "walltime": "10:00"},
        }
    )


@pytest.fixture(autouse=True)
def _workdir(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(str(tmp_path))  # where the jobs' output files go


@pytest.mark.parametrize("json_output", [True, False])
def test_show_counts_running_cores_and_what_is_borrowed(
    pbs_emulator: PbsEmulator, json_output: bool
) -> None:
    cluster = _cluster(json_output)
    ids = [cluster.submit(_job("chemistry", 6)), cluster.submit(_job("physics", 2))]
    ids.append(cluster.submit(_job("biology", 3)))  # not a client: busy, not listed
    for job_id in ids:
        pbs_emulator.wait_for(job_id, "R")
    report = client_standings(cluster)
    assert (report.scheduler, report.total_cores, report.busy_cores) == ("pbs", 16, 11)
    physics, chemistry = report.standings
    assert (physics.account, physics.running_cores, physics.borrowed_cores) == ("physics", 2, 0)
    assert (physics.share_cores, physics.cap) == (4, 8)
    assert chemistry.running_cores == 6
    assert chemistry.borrowed_cores == pytest.approx(6 - 1.6)  # 10% of 16 cores is 1.6
    assert physics.configured is None  # nothing a PBS client command can read back
    assert physics.in_place is None
    assert report.note is not None
    assert "fairshare_entity: Account_Name" in report.note
    assert "sched_priv/resource_group (physics 2500, chemistry 1000)" in report.note
    cluster.cancel(ids)


def test_sync_refuses_naming_what_the_administrator_can_do(pbs_emulator: PbsEmulator) -> None:
    cluster = _cluster(json_output=True)
    with pytest.raises(ConfigError) as caught:
        sync_shares(cluster, dry_run=True)
    message = str(caught.value)
    assert message.startswith("site test-pbs: PBS has no per-account share that hpcbridge")
    for words in (
        "'fair_share: true ALL'",
        "sched_priv/resource_group (physics 2500, chemistry 1000)",
        "max_run_res.ncpus (set by a PBS manager with qmgr)",
        "not Account_Name",
        "hpcbridge clients show reports each client's share and live use",
    ):
        assert words in message
