"""The hpcbridge command, on the local backend (and on Slurm where marked)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcbridge.cli.main import main

Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Invoke the CLI in-process with private XDG folders."""
    for variable in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    monkeypatch.delenv("HPCBRIDGE_SITE", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, list(args))
        return result.exit_code, result.stdout, result.stderr

    return invoke


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"name: cli-job\ncommand: echo from-cli\nworkdir: {tmp_path}\nstdout: cli-%j.out\n"
    )
    return path


def test_help_lists_verbs_and_exit_codes(run: Invoke) -> None:
    code, out, _ = run("--help")
    assert code == 0
    for verb in ("render", "submit", "status", "cancel", "hold", "release", "requeue", "site"):
        assert verb in out
    assert "Exit codes" in out


def test_help_imports_no_heavy_modules() -> None:
    probe = (
        "import sys; from hpcbridge.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'sqlalchemy', 'networkx', 'paramiko', 'pydantic', 'jinja2', 'rich'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_render_prints_the_script(run: Invoke, job_file: Path) -> None:
    code, out, _ = run("render", str(job_file), "--site", "test-slurm")
    assert code == 0
    assert "#SBATCH --job-name=cli-job" in out
    assert "#SBATCH --partition=debug" in out
    code, out, _ = run("render", str(job_file), "--json")
    assert json.loads(out)["script"].endswith("echo from-cli\n")


def test_submit_wait_and_status_on_the_local_backend(
    run: Invoke, job_file: Path, tmp_path: Path
) -> None:
    code, out, _ = run("submit", str(job_file), "--wait", "--timeout", "60", "--json")
    assert code == 0, out
    [info] = json.loads(out)
    assert info["state"] == "COMPLETED"
    assert (tmp_path / f"cli-{info['job_id']}.out").read_text() == "from-cli\n"
    code, out, _ = run("status")  # no ids: the jobs submitted from here
    assert code == 0
    assert info["job_id"] in out
    assert "COMPLETED" in out
    code, out, _ = run("status", info["job_id"], "--json")
    assert json.loads(out)[0]["exit_code"] == 0


def test_failed_job_exits_1(run: Invoke, tmp_path: Path) -> None:
    failing = tmp_path / "fail.yaml"
    failing.write_text(f"name: bad\ncommand: exit 2\nworkdir: {tmp_path}\n")
    code, out, _ = run("submit", str(failing), "--wait")
    assert code == 1
    assert "FAILED" in out


def test_cancel_hold_release_requeue_verbs(run: Invoke, tmp_path: Path) -> None:
    sleeper = tmp_path / "sleep.yaml"
    sleeper.write_text(f"name: nap\ncommand: sleep 60\nworkdir: {tmp_path}\n")
    code, job_id, _ = run("submit", str(sleeper))
    job_id = job_id.strip()
    assert code == 0
    code, out, _ = run("cancel", job_id, "--json")
    assert code == 0
    assert json.loads(out) == {"cancel": [job_id]}
    code, out, _ = run("wait", job_id, "--timeout", "30")
    assert code == 1
    assert "CANCELLED" in out
    code, _, err = run("hold", "424242")
    assert code == 4
    assert "424242" in err


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["status", "99999"], 4, "no job with id 99999"),
        (["render", "/nonexistent.yaml"], 3, "cannot read job file"),
        (["site", "check", "--site", "nosuchsite"], 3, "no site named 'nosuchsite'"),
        (["wait", "--timeout", "0"], 2, ""),
    ],
)
def test_errors_map_to_documented_exit_codes(
    run, args: list[str], exit_code: int, message: str
) -> None:
    code, _, err = run(*args)
    assert code == exit_code
    assert message in err


def test_invalid_job_file_names_field_and_value(run: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: j\ncommand: x\nresources: {memory: 8X}\n")
    code, _, err = run("submit", str(bad))
    assert code == 3
    assert "resources.memory: '8X' is not a memory size" in err


def test_site_list_and_check_local(run: Invoke) -> None:
    code, out, _ = run("site", "list")
    assert code == 0
    assert "local\t" in out
    assert "test-slurm\t" in out
    code, out, _ = run("site", "check", "--json")
    assert code == 0
    assert json.loads(out)["scheduler"] == "local"


@pytest.mark.slurm
def test_site_check_on_slurm(run: Invoke) -> None:
    code, out, _ = run("site", "check", "--site", "test-slurm")
    assert code == 0
    assert "UP" in out


@pytest.mark.slurm
def test_submit_to_slurm_with_wait(run: Invoke, job_file: Path, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    code, out, _ = run("submit", str(job_file), "--site", "test-slurm", "--wait", "--json")
    assert code == 0, out
    [info] = json.loads(out)
    assert info["state"] == "COMPLETED"
    assert info["nodes"]
