"""``hpcbridge priority levels|set|deadline|deadlines`` on the PBS emulator: a workflow's queued
stages move to a level with qalter -p, its running stage keeps its own; an account's deadline
raises its queued jobs and gives them back."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster
from hpcbridge.cli.main import main
from hpcbridge.resources import data_dir

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def runner(pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # PBS writes its .o files to the submission folder
    for variable in ("HPCBRIDGE_SITE", "HPCBRIDGE_LEDGER", "HPCBRIDGE_WORKFLOW_DIR"):
        monkeypatch.delenv(variable, raising=False)
    # Workflow state files and the private ledger of this test alone.
    return CliRunner(
        env={"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}
    )


def hpcbridge(runner: CliRunner, *argv: str, code: int = 0) -> str:
    result = runner.invoke(main, list(argv))
    assert result.exit_code == code, f"hpcbridge {' '.join(argv)}: {result.output}"
    return result.output


def test_levels_are_listed_lowest_first(runner: CliRunner) -> None:
    listed = json.loads(hpcbridge(runner, "priority", "levels", "--site", "test-pbs", "--json"))
    assert [row["level"] for row in listed["levels"]] == ["low", "normal", "high"]
    assert [row["nice"] for row in listed["levels"]] == [500, 0, -500]
    assert listed["accounts"] == {"physics": "high"}


def test_a_workflows_queued_stages_move_to_a_level(
    runner: CliRunner, pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    flow = tmp_path / "flow.yaml"
    stages = [
        {"name": "run", "command": "sleep 60", "workdir": str(tmp_path)},
        {"name": "later", "command": "true", "depends_on": "run", "workdir": str(tmp_path)},
        {"name": "other", "command": "true", "depends_on": "run", "workdir": str(tmp_path)},
    ]
    flow.write_text(yaml.safe_dump({"name": "prio", "stages": stages}))
    submitted = hpcbridge(runner, "workflow", "submit", str(flow), "--site", "test-pbs", "--json")
    record = json.loads(submitted)
    workflow_id, jobs = record["workflow_id"], record["jobs"]
    pbs_emulator.wait_for(jobs["run"], "R")

    moved = hpcbridge(runner, "priority", "set", "high", "--workflow", workflow_id, "--json")
    assert json.loads(moved) == {"level": "high", "jobs": [jobs["later"], jobs["other"]]}
    priorities = {stage: pbs_emulator.job(job)["Priority"] for stage, job in jobs.items()}  # type: ignore[index]
    assert priorities == {"run": 0, "later": 500, "other": 500}

    hpcbridge(runner, "priority", "set", "low", "--workflow", workflow_id, "--stages", "other")
    assert pbs_emulator.job(jobs["other"])["Priority"] == -500  # type: ignore[index]
    assert pbs_emulator.job(jobs["later"])["Priority"] == 500  # type: ignore[index]

    refused = hpcbridge(runner, "priority", "set", "top", "--workflow", workflow_id, code=3)
    assert "priority: 'top' is not a level of site test-pbs (low, normal, high)" in refused
    unknown = hpcbridge(
        runner, "priority", "set", "low", "--workflow", workflow_id, "--stages", "nope", code=2
    )
    assert "nope not in workflow" in unknown
    hpcbridge(runner, "cancel", *jobs.values(), "--site", "test-pbs")


def test_a_site_deadline_raises_queued_jobs_with_qalter_and_a_ledger_deadline_overrides_it(
    runner: CliRunner, pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    due = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    site = yaml.safe_load((data_dir("site_configs") / "test-pbs.yaml").read_text())
    site["priorities"]["deadlines"] = {"chemistry": due.isoformat()}
    site_file = tmp_path / "deadline-pbs.yaml"
    site_file.write_text(yaml.safe_dump(site, sort_keys=False))  # levels are lowest first
    spec = {"command": "true", "workdir": str(tmp_path), "account": "chemistry", "hold": True}
    with Cluster.from_site(site_file) as cluster:
        jobs = [
            cluster.submit({**spec, "name": name, "resources": {"walltime": "30:00"}})
            for name in ("a", "b")
        ]

    def priorities() -> list[object]:
        return [pbs_emulator.job(job)["Priority"] for job in jobs]  # type: ignore[index]

    shown = json.loads(
        hpcbridge(runner, "priority", "deadlines", "--site", str(site_file), "--json")
    )
    [slack] = shown["accounts"]
    assert (slack["account"], slack["due"], slack["level"]) == (
        "chemistry",
        due.isoformat(),
        "high",
    )
    assert slack["remaining_s"] == 1800, shown  # half of each 30 min request, one after the other
    assert sorted(change["job_id"] for change in shown["changes"]) == sorted(jobs)
    assert shown["applied"] is False
    assert priorities() == [0, 0]  # shown, not applied
    dry = hpcbridge(runner, "priority", "deadlines", "--site", str(site_file))
    assert "2 queued jobs would move (--apply moves them)" in dry

    applied = hpcbridge(runner, "priority", "deadlines", "--apply", "--site", str(site_file))
    line = (
        r"chemistry: due .* UTC, time left 00:5\d:\d\d, remaining work 00:30:00 "
        r"\(0 running, 2 queued\), slack 00:[0-3]\d:\d\d: high"
    )
    assert re.search(line, applied), applied
    assert "2 queued jobs moved" in applied
    assert priorities() == [500, 500]

    later = f"{due + timedelta(days=60):%Y-%m-%dT%H:%M:%S}"
    moved = hpcbridge(runner, "priority", "deadline", "chemistry", later, "--site", str(site_file))
    assert "2 queued jobs moved" in moved
    assert priorities() == [0, 0]

    # Cleared from the ledger, the site's deadline stands again.
    hpcbridge(runner, "priority", "deadline", "chemistry", "--clear", "--site", str(site_file))
    assert priorities() == [500, 500]
    hpcbridge(runner, "cancel", *jobs, "--site", str(site_file))
