"""``hpcbridge priority levels|set`` on the PBS emulator: a workflow's queued stages move to a
level with qalter -p, its running stage keeps its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pbs_plugin import PbsEmulator

from hpcbridge.cli.main import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def runner(pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # PBS writes its .o files to the submission folder
    for variable in ("HPCBRIDGE_SITE", "HPCBRIDGE_LEDGER", "HPCBRIDGE_WORKFLOW_DIR"):
        monkeypatch.delenv(variable, raising=False)
    return CliRunner(env={"XDG_STATE_HOME": str(tmp_path / "state")})


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
