"""Workflows under budgets on the real test Slurm: the whole workflow (every stage, every
array task) is checked at once before anything is submitted; over budget it is refused whole
with the numbers, or with ``on_exhausted: hold`` its entry stage waits held until ``budget
release`` finds the whole fits, and the workflow then completes.

Each test has a Slurm account of its own per ledger kind, so the queue it counts is its own.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from budget_helpers import PERIOD, clear_limits, site_with_budgets, slurm_account
from click.testing import CliRunner, Result

from hpcbridge import Cluster, JobSpec, SiteConfig
from hpcbridge.cli.main import main
from hpcbridge.ledger.store import Ledger
from hpcbridge.workflows.segments import plan_segments

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(workdir)  # where the jobs' output files go


@pytest.fixture
def account(request: pytest.FixtureRequest, ledger_url: str) -> Iterator[str]:
    kind = "pg" if ledger_url.startswith("postgresql") else "lite"
    name = slurm_account(f"bw{request.node.originalname.split('_')[1]}{kind}")
    yield name
    subprocess.run(["scancel", f"--account={name}"], check=False)
    clear_limits(name)


def _queue(account: str) -> list[str]:
    """Job ids (array tasks apart) of the account's unfinished jobs."""
    out = subprocess.run(
        ["squeue", "-h", "--array", f"--account={account}", "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def _flow(tmp_path: Path, account: str, stages: list[dict[str, Any]]) -> Path:
    path = tmp_path / "flow.yaml"
    for stage in stages:
        stage.setdefault("account", account)
    path.write_text(yaml.safe_dump({"name": "budgeted", "stages": stages}))
    return path


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout} s")


def _states(workflow_id: str, ledger_url: str) -> dict[str, dict[str, Any]]:
    shown = _cli("workflow", "status", workflow_id, "--json", "--ledger", ledger_url)
    assert shown.exit_code == 0, shown.output
    return {stage["stage"]: stage for stage in json.loads(shown.stdout)["stages"]}


def test_refused_whole_with_the_numbers(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}})
    ledger.set_allocation(account, *PERIOD, core_hours=6)
    sleep = {"command": "sleep 300"}
    flow = _flow(
        tmp_path,
        account,
        [
            # 2 + 2 x 1 + 2 = 6 core-hours: each stage fits alone, together with the 1
            # core-hour the queue commits they do not
            {"name": "a", **sleep, "resources": {"ntasks": 4, "walltime": "30:00"}},
            {
                "name": "b",
                **sleep,
                "depends_on": "a",
                "array": "0-1",
                "resources": {"ntasks": 1, "walltime": "60:00"},
            },
            {
                "name": "c",
                **sleep,
                "depends_on": "b",
                "resources": {"ntasks": 2, "walltime": "60:00"},
            },
        ],
    )
    with Cluster.from_site(site) as cluster:  # 1 core-hour committed by a held job
        queued = cluster.submit(
            JobSpec.parse(
                {
                    "name": "queued",
                    "account": account,
                    "hold": True,
                    **sleep,
                    "resources": {"ntasks": 2, "walltime": "30:00"},
                }
            )
        )
    assert _queue(account) == [queued]

    refused = _cli("workflow", "submit", str(flow), "--site", str(site), "--ledger", ledger_url)

    assert refused.exit_code == 4, refused.output
    assert (
        f"budget {account}: 6 core-hours left, 1 committed by 1 queued job; workflow "
        f"budgeted's 3 stages together may use 6 (raise the allocation: hpcbridge budget "
        f"allocate {account} --core-hours N" in refused.output
    ), refused.output
    assert _queue(account) == [queued]  # nothing of the workflow was submitted


def test_fitting_workflow_is_submitted_with_a_warning(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}, "warn_at": 50})
    ledger.set_allocation(account, *PERIOD, core_hours=3)
    flow = _flow(
        tmp_path,
        account,
        [
            {"name": "a", "command": "sleep 300", "resources": {"walltime": "60:00"}},
            {
                "name": "b",
                "command": "sleep 300",
                "depends_on": "a",
                "resources": {"walltime": "60:00"},
            },
        ],
    )
    result = _cli(
        "workflow", "submit", str(flow), "--site", str(site), "--ledger", ledger_url, "--json"
    )
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert sorted(_queue(account)) == sorted(jobs.values())
    assert (
        f"warning: budget {account}: 2 of 3 core-hours (67%) used or committed with workflow "
        "budgeted's 2 stages together" in result.stderr
    ), result.stderr


def test_held_then_released_and_completed(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets(
        "test-slurm", tmp_path, {"accounts": {account: {}}, "on_exhausted": "hold"}
    )
    ledger.set_allocation(account, *PERIOD, core_hours=0.02)  # 1.2 core-minutes
    one_minute = {"resources": {"walltime": "1:00"}}
    flow = _flow(
        tmp_path,
        account,
        [
            {"name": "first", "command": "true", **one_minute},
            {"name": "second", "command": "true", "depends_on": "first", **one_minute},
        ],
    )
    common = ["--site", str(site), "--ledger", ledger_url]
    submitted = _cli("workflow", "submit", str(flow), "--json", *common)
    assert submitted.exit_code == 0, submitted.output
    assert "stage first held until budget frees up" in submitted.stderr
    workflow_id = json.loads(submitted.stdout)["workflow_id"]
    jobs = json.loads(submitted.stdout)["jobs"]

    states = _states(workflow_id, ledger_url)
    assert states["first"]["state"] == "PENDING"
    assert states["first"]["held_for_budget"] is True
    assert states["first"]["reason"] == "held for budget (hpcbridge budget release)"
    assert states["second"]["held_for_budget"] is False
    shown = json.loads(_cli("budget", "show", "--json", *common).stdout)
    assert shown["accounts"][0]["waiting_for_budget"] == [jobs["first"]]
    # the held workflow's stages do not count as committed twice: 2 core-minutes asked
    kept = json.loads(_cli("budget", "release", "--json", *common).stdout)
    assert kept["released"] == []
    assert kept["waiting"] == [jobs["first"]]

    raised = _cli(
        "budget",
        "allocate",
        account,
        "--core-hours",
        "0.04",
        "--from",
        f"{PERIOD[0]:%Y-%m-%dT%H:%M:%S}",  # the same allocation, raised
        "--to",
        f"{PERIOD[1]:%Y-%m-%dT%H:%M:%S}",
        "--ledger",
        ledger_url,
    )
    assert raised.exit_code == 0, raised.output
    done = json.loads(_cli("budget", "release", "--json", *common).stdout)
    assert done["released"] == [jobs["first"]]
    _wait_for(
        lambda: {s["state"] for s in _states(workflow_id, ledger_url).values()} == {"COMPLETED"},
        f"workflow {workflow_id} completed",
    )


def test_segment_chain_counts_every_segment(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}})
    ledger.set_allocation(account, *PERIOD, core_hours=10)
    job = tmp_path / "long.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "name": "longrun",
                "command": "sleep 300",
                "account": account,
                "resources": {"ntasks": 4, "walltime": "60:00"},
                "checkpoint": {
                    "command": "true",
                    "restart": "sleep 300",
                    "directory": str(tmp_path / "ck"),
                    "total_runtime": "3:00:00",
                },
            }
        )
    )
    count = len(plan_segments(JobSpec.from_yaml(job), SiteConfig.load(site)).stages)
    assert count > 2  # each segment (4 core-hours) fits alone; the chain does not

    refused = _cli("workflow", "submit", str(job), "--site", str(site), "--ledger", ledger_url)

    assert refused.exit_code == 4, refused.output
    assert (
        f"budget {account}: 10 core-hours left, 0 committed by 0 queued jobs; workflow "
        f"longrun's {count} stages together may use {4 * count} " in refused.output
    ), refused.output
    assert _queue(account) == []


def test_resume_checks_what_it_resubmits(
    account: str, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    site = site_with_budgets("test-slurm", tmp_path, {"accounts": {account: {}}})
    ledger.set_allocation(account, *PERIOD, core_hours=1)
    one_minute = {"resources": {"walltime": "1:00"}}
    stages = [
        {"name": "a", "command": "false", **one_minute},
        {"name": "b", "command": "true", "depends_on": "a", **one_minute},
    ]
    flow = _flow(tmp_path, account, stages)
    common = ["--site", str(site), "--ledger", ledger_url]
    submitted = _cli("workflow", "submit", str(flow), "--json", *common)
    assert submitted.exit_code == 0, submitted.output
    workflow_id = json.loads(submitted.stdout)["workflow_id"]
    _wait_for(
        lambda: (
            [s["state"] for s in _states(workflow_id, ledger_url).values()]
            == ["FAILED", "CANCELLED"]
        ),
        "stage a failed and b cancelled",
    )
    ledger.set_allocation(account, *PERIOD, core_hours=0.02)  # 1.2 core-minutes: not both
    stages[0]["command"] = "true"
    (tmp_path / "fixed").mkdir()
    fixed = _flow(tmp_path / "fixed", account, stages)

    refused = _cli("workflow", "resume", workflow_id, "--file", str(fixed), *common)

    assert refused.exit_code == 4, refused.output
    assert "workflow budgeted's 2 stages together may use" in refused.output, refused.output
    assert _queue(account) == []
    ledger.set_allocation(account, *PERIOD, core_hours=1)
    resumed = _cli("workflow", "resume", workflow_id, "--file", str(fixed), *common)
    assert resumed.exit_code == 0, resumed.output
    _wait_for(
        lambda: {s["state"] for s in _states(workflow_id, ledger_url).values()} == {"COMPLETED"},
        f"workflow {workflow_id} completed after resume",
    )
