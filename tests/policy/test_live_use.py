"""``hpcbridge top`` on the real test Slurm and the PBS emulator: a job burning a core and
filling its memory is not flagged, a job that sleeps is flagged for both (on PBS from the
resources_used of the same qstat); sstat's steps are summed per job."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from budget_helpers import slurm_account
from click.testing import CliRunner
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster
from hpcbridge.cli.main import main
from hpcbridge.policy.live import parse_sstat

pytestmark = pytest.mark.timeout(240)
BUSY = (
    "python3 -c 'import time; x = bytearray(400 * 1024 * 1024); t = time.time()\n"
    "while time.time() - t < 90: pass'"
)


def top(*argv: str) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["top", *argv, "--json"])
    assert result.exit_code == 0, result.output
    return {row["job"]["job_id"]: row for row in json.loads(result.stdout)["jobs"]}


def test_sstat_steps_add_up_per_job_and_the_peak_is_the_largest() -> None:
    stdout = (
        "7.batch|cpu=00:00:11,mem=66152K|cpu=00:00:11,mem=66152K\n"
        "7.0|cpu=00:01:00.500,mem=1G|cpu=00:01:00,mem=1G\n"
        "8_3.extern|cpu=00:00:00,mem=0|cpu=00:00:00,mem=0\n"
    )
    assert parse_sstat(stdout) == {"7": (71.0, 1024.0), "8_3": (0.0, 0.0)}


@pytest.mark.slurm
def test_top_flags_the_job_that_sleeps_and_not_the_one_that_works(
    slurm_cluster: Cluster, workdir: Path
) -> None:
    account = slurm_account("toplive")
    spec = {"workdir": str(workdir), "account": account, "stdout": "/dev/null"}
    spec["resources"] = {"walltime": "05:00", "memory": "500M"}
    busy = slurm_cluster.submit({**spec, "name": "busy", "command": BUSY})
    idle = slurm_cluster.submit({**spec, "name": "idle", "command": "sleep 90"})
    try:
        limit = time.monotonic() + 200
        while True:  # sstat samples every 10 s (JobAcctGatherFrequency)
            rows = top("--site", "test-slurm", "--account", account)
            ready = {busy, idle} <= set(rows) and all(
                (rows[job]["job"]["mem_used_mb"] or 0) > 0 for job in (busy, idle)
            )
            working = ready and (rows[busy]["job"]["cpu_used_s"] or 0) > 0
            if working and rows[busy]["job"]["mem_used_mb"] > 300:
                break
            assert time.monotonic() < limit, f"no use seen in 200 s: {rows}"
            time.sleep(2)
    finally:
        slurm_cluster.cancel([busy, idle])
    assert rows[idle]["low"] == ["CPU 0%", f"memory {rows[idle]['mem_pct']:.0f}%"]
    assert rows[idle]["mem_pct"] < 5
    assert not any(flag.startswith("memory") for flag in rows[busy]["low"])
    assert rows[busy]["mem_pct"] > 60
    assert rows[busy]["cpu_pct"] > rows[idle]["cpu_pct"]
    assert rows[busy]["job"]["mem_mb"] == 500


def test_top_reads_pbs_resources_used_in_the_same_qstat(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Cluster.from_site("test-pbs") as cluster:
        idle = cluster.submit(
            {"name": "idle", "command": "sleep 90", "workdir": str(tmp_path)}
            | {"resources": {"walltime": "05:00", "memory": "1G"}}
        )
        try:
            pbs_emulator.wait_for(idle, "R", timeout=60)
            limit = time.monotonic() + 60
            while True:  # resources_used appears once the job has run a moment
                row = top("--site", "test-pbs").get(idle)
                if row and row["job"]["mem_used_mb"] and row["job"]["used_s"] > 0:
                    break
                assert time.monotonic() < limit, f"no use seen: {pbs_emulator.job(idle)}"
                time.sleep(1)
        finally:
            cluster.cancel([idle])
    assert (row["job"]["mem_mb"], row["job"]["cpu_used_s"]) == (1024, 0)
    assert row["low"] == ["CPU 0%", f"memory {row['mem_pct']:.0f}%"]
