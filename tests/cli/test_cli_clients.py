"""``hpcbridge clients show|sync`` as a user meets them where Slurm is not the scheduler: on
the PBS emulator (show in words and JSON; sync refused with exit 3, naming the alternative)
and on the local backend (refused). The Slurm path is tests/policy/test_clients_slurm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pbs_plugin import PbsEmulator

from hpcbridge import Cluster, JobSpec, SiteConfig
from hpcbridge.cli.main import main

pytestmark = pytest.mark.timeout(120)


def _pbs_site(tmp_path: Path) -> Path:
    data = SiteConfig.load("test-pbs").model_dump(mode="json", exclude_none=True)
    data["clients"] = {"physics": {"share": 25, "max": 50}, "chemistry": {"share": 10}}
    path = tmp_path / "pbs-clients.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_show_on_pbs_in_words_and_json(
    pbs_emulator: PbsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    site = _pbs_site(tmp_path)
    job = JobSpec.parse(
        {"name": "share", "command": "sleep 60", "account": "chemistry", "resources": {"ntasks": 4}}
    )
    with Cluster.from_site(site) as cluster:
        job_id = cluster.submit(job)
        pbs_emulator.wait_for(job_id, "R")
        shown = CliRunner().invoke(main, ["clients", "show", "--site", str(site)])
        as_json = CliRunner().invoke(main, ["clients", "show", "--site", str(site), "--json"])
        cluster.cancel([job_id])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[:6] == [
        "site test-pbs (pbs): 16 cores, 4 held by running jobs",
        "physics: share 25% (4 of 16 cores), max 50% (8 cores)",
        "  running: 0 cores (0.0% of the cluster)",
        "chemistry: share 10% (1.6 of 16 cores), no max",
        "  running: 4 cores (25.0% of the cluster), borrowing 2.4 above its share",
        lines[5],
    ]
    assert lines[5].startswith("note: PBS has no per-account share that hpcbridge can set.")
    report = json.loads(as_json.output)
    assert report["total_cores"] == 16
    chemistry = report["clients"][1]
    assert chemistry["running_cores"] == 4
    assert chemistry["borrowed_cores"] == pytest.approx(2.4)
    assert chemistry["configured"] is None


def test_sync_on_pbs_is_refused_naming_the_alternative(
    pbs_emulator: PbsEmulator, tmp_path: Path
) -> None:
    for extra in ([], ["--dry-run"], ["--json"]):
        result = CliRunner().invoke(
            main, ["clients", "sync", "--site", str(_pbs_site(tmp_path)), *extra]
        )
        assert result.exit_code == 3, result.output
        assert result.output.startswith(
            "error: site test-pbs: PBS has no per-account share that hpcbridge can set."
        )
        assert "resource_group (physics 2500, chemistry 1000)" in result.output


@pytest.mark.parametrize("verb", ["show", "sync"])
def test_the_local_backend_has_no_shares(verb: str) -> None:
    result = CliRunner().invoke(main, ["clients", verb, "--site", "local"])
    assert result.exit_code == 3
    assert result.output == "error: site local: the local backend has no scheduler shares\n"
