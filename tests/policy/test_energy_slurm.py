"""``begin: cheapest`` on the real test Slurm: under a tariff whose cheap window opens a few
minutes from now, the job is submitted with --begin at the window's start, and Slurm keeps
it pending for BeginTime until then."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcbridge.cli.main import main
from hpcbridge.resources import data_dir

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(120)]


def test_a_job_asking_for_the_cheapest_start_begins_when_the_cheap_window_opens(
    tmp_path: Path, workdir: Path, ledger_url: str
) -> None:
    opens = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=4)
    closes = opens + timedelta(hours=1)
    site = yaml.safe_load((data_dir("site_configs") / "test-slurm.yaml").read_text())
    window = {"start": f"{opens:%H:%M}", "end": f"{closes:%H:%M}", "price": 0.1}
    site["energy"] = {"price": 0.5, "windows": [window], "watts_per_core": 20}
    site_file = tmp_path / "tariff.yaml"
    site_file.write_text(yaml.safe_dump(site, sort_keys=False))
    job = {
        "name": "off-peak",
        "command": "true",
        "begin": "cheapest",
        "workdir": str(workdir),
        "resources": {"walltime": "10:00"},
    }
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))

    options = ["--site", str(site_file), "--ledger", ledger_url, "--json"]
    result = CliRunner().invoke(main, ["submit", str(job_file), *options])
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["job_id"]
    try:
        assert (
            f"job off-peak begins {opens:%Y-%m-%d %H:%M} UTC, the cheapest start" in result.stderr
        )
        # 20 W for the predicted 5 min (half the request, from an empty ledger).
        assert "(starting now: 0.00; estimated from 20 W over 5 min)" in result.stderr
        listed = subprocess.run(
            ["squeue", "--noheader", f"--jobs={job_id}", "--format=%T %r %S"],
            capture_output=True,
            text=True,
            check=True,
            env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        ).stdout.split()
        assert listed == ["PENDING", "BeginTime", f"{opens:%Y-%m-%dT%H:%M:%S}"]
    finally:
        subprocess.run(["scancel", job_id], check=False)
