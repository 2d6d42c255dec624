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


def _loaded_after(code: str) -> list[str]:
    """Top-level packages of note a fresh interpreter has loaded after running ``code``."""
    probe = (
        f"{code}\nimport sys\n"
        "heavy = {'sqlalchemy', 'paramiko', 'networkx', 'jinja2', 'pydantic', 'pydantic_core',\n"
        "         'yaml', 'tenacity', 'httpx', 'cloudpickle', 'matplotlib', 'rich', 'click'}\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & heavy)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout.split()


def test_python_api_imports_without_heavy_modules() -> None:
    """The facade and JobSpec import in a fraction of pydantic's own import time (issue 16
    item 5): no database, SSH, graph, template or model library until first used."""
    assert _loaded_after("import hpcbridge\nfrom hpcbridge import Cluster, JobSpec") == []


def test_first_use_loads_what_it_needs() -> None:
    """The deferred models and Jinja load when used, not before."""
    loaded = _loaded_after(
        "from hpcbridge import Cluster, JobSpec\n"
        "spec = JobSpec(name='a', command='true')\n"
        "assert isinstance(spec, JobSpec)\n"
        "Cluster.from_site('test-slurm')"
    )
    assert {"pydantic", "yaml"} <= set(loaded)
    assert not {"jinja2", "sqlalchemy", "paramiko", "networkx"} & set(loaded)
    rendered = _loaded_after(
        "from hpcbridge import Cluster\n"
        "Cluster.from_site('test-slurm').render({'name': 'a', 'command': 'true'})"
    )
    assert "jinja2" in rendered


def test_deferred_model_behaves_as_the_class() -> None:
    code = (
        "import hpcbridge\n"
        "from hpcbridge import JobSpec, Resources\n"
        "assert type(JobSpec).__name__ == '_Deferred'\n"
        "spec = JobSpec.parse({'name': 'a', 'command': 'x', 'resources': {'cpus_per_task': 2}})\n"
        "from hpcbridge.jobs import spec as module\n"
        "assert isinstance(spec, JobSpec) and isinstance(spec.resources, Resources)\n"
        "assert issubclass(module.JobSpec, JobSpec) and JobSpec == module.JobSpec\n"
        "assert hpcbridge.JobSpec is module.JobSpec\n"
        "assert (JobSpec | None) == (module.JobSpec | None)\n"
        "class Mine(JobSpec): pass\n"
        "assert Mine.__mro__[1] is module.JobSpec\n"
        "assert JobSpec.__name__ == 'JobSpec' and 'name' in JobSpec.model_fields\n"
        "assert repr(JobSpec) == repr(module.JobSpec)\n"
        "import pickle\n"
        "assert pickle.loads(pickle.dumps(spec)) == spec\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
