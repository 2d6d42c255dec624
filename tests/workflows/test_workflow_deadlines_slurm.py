"""Deadlines on the real test Slurm, from the command line: a workflow whose deadline fits is
`likely` (checked first with `deadlines check`, Slurm's own start estimate for its first
stage) and submitted; one whose stage cannot end before its deadline is `infeasible` with
the numbers and refused (nothing submitted), or with --force submitted and dropped by Slurm
itself (--deadline); `hpcbridge deadlines` records the first as met and the second as
missed, and `report sla` counts both for their client (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from hpcbridge.cli.main import main

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def hpcbridge(*argv: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(argv))
    assert result.exit_code == code, f"hpcbridge {' '.join(argv)}: {result.output}"
    return result


def workflow_file(tmp_path: Path, name: str, deadline: datetime, walltime: str) -> Path:
    stage = {"command": "true", "account": "chemistry", "resources": {"walltime": walltime}}
    data = {
        "name": name,
        "deadline": deadline.isoformat(),
        "stages": [
            {**stage, "name": "prep", "workdir": str(tmp_path)},
            {**stage, "name": "run", "depends_on": "prep", "workdir": str(tmp_path)},
        ],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def queued_by_name(name: str) -> list[str]:
    listed = subprocess.run(
        ["squeue", "--noheader", f"--name={name}.prep,{name}.run", "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def wait_for_outcomes(options: list[str], names: set[str], timeout: float = 240) -> list[Any]:
    """`hpcbridge deadlines` until every named workflow is over (its row shows an outcome)."""
    limit = time.monotonic() + timeout
    closed: dict[str, Any] = {}
    while True:
        rows = json.loads(hpcbridge("deadlines", *options, "--json").stdout)["deadlines"]
        closed.update({row["name"]: row for row in rows if row["finished_at"]})
        if names <= set(closed):
            return [closed[name] for name in sorted(names)]
        assert time.monotonic() < limit, f"still open after {timeout} s: {rows}"
        time.sleep(1)


def test_a_likely_deadline_is_met_and_an_infeasible_one_refused_then_missed(
    tmp_path: Path, ledger_url: str
) -> None:
    options = ["--site", "test-slurm", "--ledger", ledger_url]
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC).replace(microsecond=0)

    fits = workflow_file(tmp_path, f"fits-{tag}", now + timedelta(days=1), "05:00")
    checked = json.loads(hpcbridge("deadlines", "check", str(fits), *options, "--json").stdout)
    assert checked["verdict"] == "likely", checked["reason"]
    assert checked["critical_path"] == [f"fits-{tag}.prep", f"fits-{tag}.run"]
    prep, run = checked["stages"]
    assert (prep["run_s"], prep["run_high_s"]) == (150, 300)  # half the request; all of it
    assert prep["wait_basis"] == "Slurm's estimate (sbatch --test-only)"
    assert run["start"] >= prep["finish"]
    submitted = hpcbridge("workflow", "submit", str(fits), *options, "--json")
    assert "deadline of workflow fits-" in submitted.stderr
    # Two 5 min stages on an empty ledger: half the request predicted, the request the bound.
    assert ": likely: expected finish" in submitted.stderr
    assert "margin 02:24:00" in submitted.stderr  # 10% of the day
    record = json.loads(submitted.stdout)
    assert set(record["jobs"]) == {"prep", "run"}

    late = workflow_file(tmp_path, f"late-{tag}", now + timedelta(minutes=3), "10:00")
    refused = hpcbridge("workflow", "submit", str(late), *options, code=3)
    assert "infeasible" in refused.output
    assert "its time limit 00:10:00 cannot end before the deadline" in refused.output
    assert "and Slurm cancels such a job (" in refused.output
    assert "--force" in refused.output
    assert queued_by_name(f"late-{tag}") == []  # nothing was submitted

    forced = hpcbridge("workflow", "submit", str(late), *options, "--force", "--json")
    assert "infeasible" in forced.stderr

    met, missed = wait_for_outcomes(options, {f"fits-{tag}", f"late-{tag}"})
    assert (met["verdict"], met["state"], met["client"]) == ("met", "done", "chemistry")
    assert missed["verdict"] == "missed"
    assert missed["state"].endswith("DEADLINE") or missed["state"].endswith("CANCELLED")

    window = [
        "--from",
        f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%S}",
        "--to",
        f"{now + timedelta(days=2):%Y-%m-%dT%H:%M:%S}",
    ]
    report = hpcbridge("report", "sla", *window, "--cluster", "hpcbridge", "--ledger", ledger_url)
    assert "| chemistry | 2 | 1 | 1 | 0 | 50.0% |" in report.stdout
    as_json = hpcbridge("report", "sla", *window, "--ledger", ledger_url, "--format", "json").stdout
    [client] = json.loads(as_json)["clients"]
    assert (client["client"], client["met"], client["missed"]) == ("chemistry", 1, 1)


def test_a_job_with_a_deadline_is_checked_at_submit_and_tracked(
    tmp_path: Path, ledger_url: str
) -> None:
    options = ["--site", "test-slurm", "--ledger", ledger_url]
    now = datetime.now(UTC).replace(microsecond=0)
    job = {
        "name": f"dl-job-{uuid.uuid4().hex[:6]}",
        "command": "true",
        "account": "chemistry",
        "workdir": str(tmp_path),
        "resources": {"walltime": "10:00"},
    }
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump({**job, "deadline": (now + timedelta(minutes=3)).isoformat()}))
    refused = hpcbridge("submit", str(late), *options, code=3)
    assert f"deadline of job {job['name']}: infeasible" in refused.output

    fits = tmp_path / "fits.yaml"
    fits.write_text(yaml.safe_dump({**job, "deadline": (now + timedelta(days=1)).isoformat()}))
    submitted = hpcbridge("submit", str(fits), *options, "--json")
    assert f"deadline of job {job['name']}: likely" in submitted.stderr
    job_id = json.loads(submitted.stdout)["job_id"]
    [row] = wait_for_outcomes(options, {str(job["name"])})
    assert (row["kind"], row["ref"], row["verdict"]) == ("job", job_id, "met")
