"""Budgets on the real test Slurm: refused with the numbers, held then released when the
allocation is raised, and written into slurmdbd so Slurm itself keeps a job pending.

Each test has a Slurm account of its own (per ledger kind, since the SQLite and PostgreSQL
runs may go side by side), so the queue commitments counted are this test's alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from budget_helpers import (
    PERIOD,
    clear_limits,
    grp_tres_mins,
    record_usage,
    site_with_budgets,
    slurm_account,
)
from click.testing import CliRunner

from hpcbridge import Cluster, JobSpec
from hpcbridge.cli.main import main
from hpcbridge.errors import BudgetExceeded
from hpcbridge.ledger.store import Ledger
from hpcbridge.policy.budget import submit_within_budget

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(workdir)  # where the jobs' output files go


@pytest.fixture
def account(request: pytest.FixtureRequest, ledger_url: str) -> Iterator[str]:
    kind = "pg" if ledger_url.startswith("postgresql") else "lite"
    name = slurm_account(f"bt{request.node.originalname.split('_')[1]}{kind}")
    yield name
    _cancel_account_jobs(name)
    clear_limits(name)


def _cancel_account_jobs(account: str) -> None:
    import subprocess

    subprocess.run(["scancel", f"--account={account}"], check=False)


def _job(account: str, cores: int, minutes: int, **fields: object) -> JobSpec:
    return JobSpec.parse(
        {
            "name": f"budget-{account}",
            "command": "sleep 300",
            "account": account,
            "resources": {"ntasks": cores, "walltime": f"{minutes}:00"},
            **fields,
        }
    )


def _squeue(job_id: str) -> tuple[str, str]:
    import subprocess

    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T|%r"], capture_output=True, text=True, check=True
    ).stdout.strip()
    state, _, reason = out.partition("|")
    return state, reason


def _wait_for(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


def test_refuse_over_budget_with_the_numbers(account: str, ledger: Ledger, tmp_path: Path) -> None:
    site = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}})
    ledger.set_allocation(account, *PERIOD, core_hours=10)
    record_usage(ledger, "hpcbridge", "slurm", account, core_hours=4)
    with Cluster.from_site(site) as cluster:
        queued = cluster.submit(_job(account, 4, 30, hold=True))  # commits 2 core-hours
        # 1 core-hour, held by its own spec so it stays queued (free CPUs would start it)
        fits = submit_within_budget(cluster, ledger, _job(account, 2, 30, hold=True))
        assert fits.decision is not None
        assert fits.decision.allowed
        assert not fits.held
        with pytest.raises(BudgetExceeded) as refused:
            submit_within_budget(cluster, ledger, _job(account, 8, 30))  # 4 core-hours
    message = str(refused.value)
    assert message.startswith(
        f"budget {account}: 6 core-hours left, 3 committed by 2 queued jobs; "
        "this job may use 4 (raise the allocation: "
        f"hpcbridge budget allocate {account} --core-hours N"
    ), message
    assert _squeue(queued)[0] == "PENDING"
    # the CLI says the same and exits 4, submitting nothing more
    result = CliRunner().invoke(
        main,
        [
            "submit",
            str(_write_job(tmp_path, account, 8, 30)),
            "--site",
            str(site),
            "--ledger",
            ledger.engine.url.render_as_string(hide_password=False),
        ],
    )
    assert result.exit_code == 4, result.output
    assert f"budget {account}: 6 core-hours left" in result.output


def _write_job(tmp_path: Path, account: str, cores: int, minutes: int) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        json.dumps(
            {
                "name": f"budget-{account}",
                "command": "sleep 300",
                "account": account,
                "resources": {"ntasks": cores, "walltime": f"{minutes}:00"},
            }
        )
    )
    return path


def test_hold_then_release_when_the_allocation_is_raised(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets(
        "test-slurm", tmp_path, {"accounts": {account: {}}, "on_exhausted": "hold"}
    )
    ledger.set_allocation(account, *PERIOD, core_hours=1)
    runner = CliRunner()
    common = ["--site", str(site), "--ledger", ledger_url]
    with Cluster.from_site(site) as cluster:
        submitted = submit_within_budget(cluster, ledger, _job(account, 4, 30))  # 2 core-hours
    assert submitted.held
    job_id = submitted.job_id
    assert _squeue(job_id) == ("PENDING", "JobHeldUser")
    shown = json.loads(runner.invoke(main, ["budget", "show", "--json", *common]).output)
    (standing,) = shown["accounts"]
    assert standing["waiting_for_budget"] == [job_id]
    assert standing["budgets"][0]["left_core_hours"] == pytest.approx(1.0)
    # nothing has changed: nothing is released, the job still waits (and again: idempotent)
    for _ in range(2):
        kept = json.loads(runner.invoke(main, ["budget", "release", "--json", *common]).output)
        assert kept["released"] == []
        assert kept["waiting"] == [job_id]
    assert _squeue(job_id) == ("PENDING", "JobHeldUser")
    ledger.set_allocation(account, *PERIOD, core_hours=10)  # the allocation is raised
    done = json.loads(runner.invoke(main, ["budget", "release", "--json", *common]).output)
    assert done["released"] == [job_id]
    assert done["waiting"] == []
    _wait_for(lambda: _squeue(job_id)[1] != "JobHeldUser", f"job {job_id} released")
    again = json.loads(runner.invoke(main, ["budget", "release", "--json", *common]).output)
    assert again == {"released": [], "waiting": [], "dropped": [], "busy": False}


def test_sync_writes_grptresmins_and_slurm_keeps_jobs_pending(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}})
    ledger.set_allocation(account, *PERIOD, core_hours=2.5, gpu_hours=0.5)
    runner = CliRunner()
    common = ["--site", str(site), "--ledger", ledger_url]
    result = runner.invoke(main, ["budget", "sync", *common])
    assert result.exit_code == 0, result.output
    assert grp_tres_mins(account) == "cpu=150,gres/gpu=30"
    # an allocation used up: Slurm itself keeps a job submitted without hpcbridge's check
    ledger.set_allocation(account, *PERIOD, core_hours=0)
    assert runner.invoke(main, ["budget", "sync", *common]).exit_code == 0
    assert grp_tres_mins(account).startswith("cpu=0")
    with Cluster.from_site(site) as cluster:
        job_id = cluster.submit(_job(account, 1, 5))
    _wait_for(
        lambda: _squeue(job_id) == ("PENDING", "AssocGrpCPUMinutesLimit"),
        f"job {job_id} pending for AssocGrpCPUMinutesLimit",
    )
    shown = json.loads(runner.invoke(main, ["budget", "show", "--json", *common]).output)
    (standing,) = shown["accounts"]
    assert standing["held_by_slurm"] == [
        {
            "job_id": job_id,
            "why": "the account's core-hour budget in Slurm (GrpTRESMins cpu) is used up "
            "(AssocGrpCPUMinutesLimit); raise it with hpcbridge budget sync",
        }
    ]
    text = runner.invoke(main, ["budget", "show", *common]).output
    assert f"job {job_id}: pending in Slurm: the account's core-hour budget" in text


def test_a_sweep_must_fit_whole_refused_or_held_and_released_together(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    ledger.set_allocation(account, *PERIOD, core_hours=1)
    job = _write_job(tmp_path, account, 1, 30)  # each row half a core-hour
    rows = tmp_path / "rows.csv"
    rows.write_text("SEED\n1\n2\n3\n4\n")
    runner = CliRunner()
    refusing = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}})
    common = ["--ledger", ledger_url, "--json"]
    refused = runner.invoke(
        main, ["submit", str(job), "--sweep", str(rows), "--site", str(refusing), *common]
    )
    assert refused.exit_code == 4, refused.output
    assert "sweep rows.csv's 4 jobs together may use 2 (raise the allocation" in refused.output
    assert _account_jobs(account) == []  # nothing of it was submitted

    holding = tmp_path / "holding.yaml"
    holding.write_text(
        refusing.read_text().replace("budgets:\n", "budgets:\n  on_exhausted: hold\n", 1)
    )
    held = runner.invoke(
        main, ["submit", str(job), "--sweep", str(rows), "--site", str(holding), *common]
    )
    assert held.exit_code == 0, held.output
    answer = json.loads(held.stdout)
    assert answer["held_for_budget"] is True
    array = answer["job_ids"][0].partition("_")[0]
    assert answer["job_ids"] == [f"{array}_{index}" for index in range(4)]
    assert set(_account_jobs(account)) == {("PENDING", "JobHeldUser")}
    site_args = ["--site", str(holding), "--ledger", ledger_url, "--json"]
    shown = json.loads(runner.invoke(main, ["budget", "show", *site_args]).output)
    assert shown["accounts"][0]["waiting_for_budget"] == [array]  # what release lets go
    ledger.set_allocation(account, *PERIOD, core_hours=10)
    done = json.loads(runner.invoke(main, ["budget", "release", *site_args]).output)
    assert done["released"] == [array]
    _wait_for(
        lambda: ("PENDING", "JobHeldUser") not in set(_account_jobs(account)),
        "every task of the sweep released",
    )


def _account_jobs(account: str) -> list[tuple[str, str]]:
    import subprocess

    out = subprocess.run(
        ["squeue", "-h", "--array", f"--account={account}", "-o", "%T|%r"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [tuple(line.split("|", 1)) for line in out]  # type: ignore[misc]
