"""The README's example pipeline, unchanged but for --site, on every backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from pbs_plugin import PbsEmulator

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "examples" / "pipeline.py"

pytestmark = pytest.mark.timeout(180)


def run_pipeline(site: str, workdir: Path, env: dict[str, str], code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, str(PIPELINE), "--site", site, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=170,
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert "sum of squares: 30" in done.stdout
    return done.stdout


def test_pipeline_on_the_local_backend(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    out = run_pipeline("local", tmp_path / "work", env)
    assert out.count("COMPLETED") == 7  # prepare, the array and its 4 tasks, summarize


def test_the_demo_counts_its_jobs_and_attempts_apart_from_the_syncs_records(
    tmp_path: Path,
) -> None:
    """Run twice on one ledger: the second sync reads the first run's attempts again (its
    overlap), which are not this pipeline's; the pipeline's own count stays six."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    first = run_pipeline("local", tmp_path / "one", env)
    second = run_pipeline("local", tmp_path / "two", env)
    read = r"sync ok, (\d+) attempt records of cluster 'local' read from local and upserted"
    own = r"this pipeline in the ledger: (\d+) of its (\d+) jobs, in (\d+) attempts"
    assert [numbers(read, out) for out in (first, second)] == [(6,), (12,)]
    for out in (first, second):
        assert numbers(own, out) == (6, 6, 6)  # nothing requeued: one attempt per job
        [core_seconds] = numbers(r"(\d+) core-seconds", out)
        assert core_seconds >= 4  # four tasks of one CPU sleeping a second each


def numbers(pattern: str, text: str) -> tuple[int, ...]:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return tuple(int(group) for group in found.groups())


def test_the_demo_says_why_a_sync_failed(pbs_emulator: PbsEmulator, tmp_path: Path) -> None:
    """A sync that fails is reported with its reason, and the demo exits 1."""
    site = yaml.safe_load((ROOT / "site_configs" / "test-pbs.yaml").read_text())
    logs = tmp_path / "accounting"
    for offset in (-2, -1, 0, 1):  # the days a one-day first sync reads, in any zone
        (logs / f"{date.today() + timedelta(days=offset):%Y%m%d}").mkdir(parents=True)
    site["ledger"] = {"pbs_accounting_dir": str(logs), "first_sync": "1-00:00:00"}
    config = tmp_path / "broken-logs.yaml"
    config.write_text(yaml.safe_dump(site))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    out = run_pipeline(str(config), tmp_path / "work", env, code=1)
    assert out.count("COMPLETED") == 7  # the jobs ran; only accounting failed
    assert "sync failed, 0 attempt records" in out
    assert re.search(
        r"sync of pbs-log failed: cannot read the PBS accounting log .*Is a directory", out
    ), out


def test_pipeline_on_the_pbs_emulator(pbs_emulator: PbsEmulator, tmp_path: Path) -> None:
    out = run_pipeline("test-pbs", tmp_path / "work", dict(os.environ))
    assert out.count("COMPLETED") == 7
    assert f"[].{pbs_emulator.server_name}" in out  # the array's PBS id


@pytest.mark.slurm
def test_pipeline_on_slurm(tmp_path: Path) -> None:
    out = run_pipeline("test-slurm", tmp_path / "work", dict(os.environ))
    assert out.count("COMPLETED") == 7
