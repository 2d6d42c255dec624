"""The README's example pipeline, unchanged but for --site, on every backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pbs_plugin import PbsEmulator

PIPELINE = Path(__file__).resolve().parent.parent / "examples" / "pipeline.py"

pytestmark = pytest.mark.timeout(180)


def run_pipeline(site: str, workdir: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(PIPELINE), "--site", site, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sum of squares: 30" in done.stdout
    return done.stdout


def test_pipeline_on_the_local_backend(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    out = run_pipeline("local", tmp_path / "work", env)
    assert out.count("COMPLETED") == 7  # prepare, the array and its 4 tasks, summarize


def test_pipeline_on_the_pbs_emulator(pbs_emulator: PbsEmulator, tmp_path: Path) -> None:
    out = run_pipeline("test-pbs", tmp_path / "work", dict(os.environ))
    assert out.count("COMPLETED") == 7
    assert f"[].{pbs_emulator.server_name}" in out  # the array's PBS id


@pytest.mark.slurm
def test_pipeline_on_slurm(tmp_path: Path) -> None:
    out = run_pipeline("test-slurm", tmp_path / "work", dict(os.environ))
    assert out.count("COMPLETED") == 7
