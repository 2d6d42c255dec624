"""Budgets on the PBS emulator: hpcbridge's own check (PBS has no association limits),
counting queued subjobs from one qstat call; held with qsub -h and released with qrls."""

from __future__ import annotations

import json

import pytest
from budget_helpers import PERIOD, record_usage
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobSpec, SiteConfig
from hpcbridge.errors import BudgetExceeded, ConfigError
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.budget import submit_many_within_budget, submit_within_budget
from hpcbridge.policy.release import release_waiting
from hpcbridge.policy.slurm_limits import sync_limits
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.run import submit_workflow
from hpcbridge.workflows.store import StateFileStore

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(
    pbs_emulator: PbsEmulator, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> Cluster:
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", f"{tmp_path}/state")
    base = SiteConfig.load("test-pbs")
    budgets = {"accounts": {"chemistry": {}}, "on_exhausted": "hold"}
    data = base.model_dump(exclude_none=True) | {"budgets": budgets}
    return Cluster(SiteConfig.model_validate(data))


def _job(cores: int, minutes: int, **fields: object) -> JobSpec:
    return JobSpec.parse(
        {
            "name": "budget",
            "command": "sleep 120",
            "account": "chemistry",
            "resources": {"ntasks": cores, "walltime": f"{minutes}:00"},
            **fields,
        }
    )


def test_pbs_budget_is_hpcbridges_own_check(cluster: Cluster, ledger: Ledger) -> None:
    ledger.set_allocation("chemistry", *PERIOD, core_hours=4)
    record_usage(ledger, "emulator", "pbs", "chemistry", core_hours=1)
    # an array of 4 held tasks x 1 core x 15 min commits 1 core-hour (every subjob counted)
    queued = cluster.submit(_job(1, 15, array="1-4", hold=True))
    held = submit_within_budget(cluster, ledger, _job(4, 45))  # 3 core-hours: 3 - 1 < 3
    assert held.held
    assert held.warnings == (
        "budget chemistry: 3 core-hours left, 1 committed by 4 queued jobs; this job may use "
        "3 (raise the allocation: hpcbridge budget allocate chemistry --core-hours N "
        "[--gpu-hours M])",
    )
    (info,) = cluster.status([held.job_id]).values()
    assert info.reason == "JobHeldUser"
    assert release_waiting(cluster, ledger).released == ()
    ledger.set_allocation("chemistry", *PERIOD, core_hours=10)
    assert release_waiting(cluster, ledger).released == (held.job_id,)
    assert cluster.status([held.job_id])[held.job_id].reason != "JobHeldUser"
    refusing = Cluster(
        cluster.site.model_copy(
            update={"budgets": cluster.site.budgets.model_copy(update={"on_exhausted": "refuse"})}
        )
    )
    with pytest.raises(BudgetExceeded, match=r"^budget chemistry: 9 core-hours left, 4 committed"):
        submit_within_budget(refusing, ledger, _job(4, 60 * 4))
    with pytest.raises(ConfigError, match="pbs has no association limits"):
        sync_limits(cluster, ledger)
    cluster.cancel([queued, held.job_id])


def test_pbs_workflow_held_whole_then_released(
    cluster: Cluster, ledger: Ledger, tmp_path: object
) -> None:
    ledger.set_allocation("chemistry", *PERIOD, core_hours=2)
    stage = _job(2, 30).model_dump(exclude_none=True)  # 1 core-hour
    stages = [
        stage | {"name": "first"},
        stage | {"name": "second", "depends_on": "first"},
        stage | {"name": "third", "depends_on": "first"},
    ]
    workflow = Workflow.parse({"name": "flow", "stages": stages}, source="test")
    said: list[str] = []
    record = submit_workflow(
        cluster, workflow, StateFileStore(f"{tmp_path}/wf"), ledger=ledger, notify=said.append
    )
    jobs = {name: record.latest_job(name) for name in ("first", "second", "third")}
    assert said[0].startswith(
        "budget chemistry: 2 core-hours left, 0 committed by 0 queued jobs; workflow flow's "
        "3 stages together may use 3 "
    ), said
    infos = cluster.status([job for job in jobs.values() if job])
    assert infos[str(jobs["first"])].reason == "JobHeldUser"
    assert release_waiting(cluster, ledger).released == ()
    ledger.set_allocation("chemistry", *PERIOD, core_hours=3)  # fits only if not counted twice
    assert release_waiting(cluster, ledger).released == (jobs["first"],)
    assert cluster.status([str(jobs["first"])])[str(jobs["first"])].reason != "JobHeldUser"
    cluster.cancel([job for job in jobs.values() if job])


def test_pbs_sweep_held_whole_then_its_array_released(cluster: Cluster, ledger: Ledger) -> None:
    ledger.set_allocation("chemistry", *PERIOD, core_hours=1)
    rows = [_job(1, 30, env={"SEED": str(seed)}) for seed in range(4)]  # 2 core-hours
    held = submit_many_within_budget(cluster, ledger, rows, name="sweep seeds")
    assert held.held
    assert held.warnings[0].endswith(
        "sweep seeds's 4 jobs together may use 2 (raise the allocation: hpcbridge budget "
        "allocate chemistry --core-hours N [--gpu-hours M])"
    )
    array = cluster.submitted_in[held.job_ids[0]]
    assert "[]" in array  # one array, held and released whole (qrls takes no subjob)
    assert {cluster.submitted_in[job] for job in held.job_ids} == {array}
    assert _pbs_state(cluster, array) == "H"
    assert release_waiting(cluster, ledger).released == ()
    ledger.set_allocation("chemistry", *PERIOD, core_hours=10)
    assert release_waiting(cluster, ledger).released == (array,)
    assert _pbs_state(cluster, array) != "H"
    cluster.cancel([array])


def _pbs_state(cluster: Cluster, job_id: str) -> str:
    """The array's own job_state as qstat gives it (hpcbridge reports arrays by their tasks)."""
    answer = cluster.transport.run(["qstat", "-f", "-F", "json", job_id])
    assert answer.ok, answer.stderr
    state: str = json.loads(answer.stdout)["Jobs"][job_id]["job_state"]
    return state
