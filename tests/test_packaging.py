"""A non-editable wheel carries templates, site configs and ledger migrations, and finds them
from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import hpcbridge

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    return next(out.glob("hpcbridge-*.whl"))


def test_wheel_ships_data_folders(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "hpcbridge/_data/templates/slurm/job.sh.j2" in names
    assert "hpcbridge/_data/templates/common/body.sh.j2" in names
    assert "hpcbridge/_data/site_configs/local.yaml" in names
    assert "hpcbridge/_data/accounting/migrations/env.py" in names
    assert any(name.startswith("hpcbridge/_data/accounting/migrations/versions/") for name in names)


def test_installed_wheel_renders_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site-packages"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    (tmp_path / "job.yaml").write_text("name: packaged\ncommand: echo ok\n")
    probe = (
        "import hpcbridge, hpcbridge.resources as r; print(hpcbridge.__file__); "
        "print(r.data_dir('templates')); "
        "from hpcbridge import Cluster, JobSpec; "
        "from hpcbridge.ledger.store import Ledger; Ledger.open('sqlite:///ledger.sqlite'); "
        "print(Cluster.from_site('test-slurm').render(JobSpec.from_yaml('job.yaml')))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, templates, script = done.stdout.split("\n", 2)
    assert module_file.startswith(str(target))
    assert templates == str(target / "hpcbridge" / "_data" / "templates")
    assert "#SBATCH --job-name=packaged" in script
    assert (tmp_path / "ledger.sqlite").stat().st_size > 0  # migrated from the wheel's copy


def test_public_api_matches_all() -> None:
    exported = set(hpcbridge.__all__) - {"__version__"}
    assert exported == set(hpcbridge._MODULE_OF)
    for name in hpcbridge.__all__:
        assert getattr(hpcbridge, name) is not None
    with pytest.raises(AttributeError):
        _ = hpcbridge.NoSuchThing  # type: ignore[attr-defined]
