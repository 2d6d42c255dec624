"""pytest plugin: the PBS emulator (tests/cluster/pbs) as a fixture.

Register it with ``pytest_plugins = ["pbs_plugin"]``. A test that takes ``pbs_emulator`` gets
its own emulated PBS installation in its tmp dir: the real command names (qsub, qstat, ...)
first on PATH, ``PBS_EMULATOR_HOME`` set, a configuration like a small real cluster, and a
handle for changing settings and injecting faults. At teardown the server and every process
it started are stopped. Such tests are marked ``pbs`` automatically.

Settings other than the defaults::

    @pytest.mark.pbs_config(json_output=False)          # an older qstat without -F
    def test_x(pbs_emulator): ...

    @pytest.mark.parametrize("pbs_emulator", [{"job_history_enable": False}], indirect=True)
    def test_y(pbs_emulator): ...
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

EMULATOR_DIR = Path(__file__).resolve().parent / "cluster" / "pbs"
BIN_DIR = EMULATOR_DIR / "bin"
if str(EMULATOR_DIR) not in sys.path:
    sys.path.insert(0, str(EMULATOR_DIR))

from pbs_emulator import admin, client, output  # noqa: E402
from pbs_emulator.home import Home, short_hostname  # noqa: E402

# Who the emulator's commands act as: a user with no PBS rights (``user="root"`` for a manager).
PLAIN_USER = "hpcuser"

FAULTS = (
    "server_down",
    "server_up",
    "hang",
    "node_down",
    "node_up",
    "node_offline",
    "node_online",
    "rerun",
    "clear",
)


def default_config(server: str) -> dict[str, Any]:
    """A small cluster: three queues, one 16-cpu node with 2 GPUs, history on, fast faults."""
    return {
        "server_name": server,
        "default_queue": "workq",
        "queues": {
            "workq": {"resources_max": {"walltime": "24:00:00"}},
            "long": {"resources_max": {"walltime": "168:00:00"}},
            "gpu": {"resources_max": {"walltime": "24:00:00"}},
        },
        "nodes": [{"name": server, "ncpus": 16, "mem": "64gb", "ngpus": 2}],
        "job_history_enable": True,
        "json_output": True,
        "node_fail_requeue": 1,  # real default 310 s: far too slow for tests
        "kill_delay": 2,
        "exiting_seconds": 0.1,
        "idle_exit_seconds": 60,
    }


class PbsEmulator:
    """Handle on one emulated PBS installation (what the ``pbs_emulator`` fixture yields)."""

    def __init__(self, home: Path, config: dict[str, Any], env: dict[str, str]) -> None:
        self.home = home
        self.server_name: str = config["server_name"]
        self.bin_dir = BIN_DIR
        self.env = env
        self._home = Home(home)
        self._home.update_config(config)
        (home / "jobhome").mkdir(exist_ok=True)
        self.workdir = home.parent / "pbs-work"
        self.workdir.mkdir(exist_ok=True)

    # ---- configuration and faults --------------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into config.json; a running server applies them at once."""
        return admin.configure(self._home, **changes)

    def fault(
        self, kind: str, *, seconds: float = 0, node: str | None = None, job_ids: Sequence[str] = ()
    ) -> Any:
        """Inject a fault: server_down/server_up, hang (seconds), node_down/node_up,
        node_offline/node_online (node: default the first), rerun (job_ids), clear."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        if kind in ("server_down", "server_up"):
            return admin.set_fault(self._home, server_down=kind == "server_down")
        if kind == "hang":
            return admin.set_fault(self._home, hang_seconds=seconds)
        if kind == "clear":
            return admin.set_fault(self._home, server_down=False, hang_seconds=0)
        if kind == "rerun":
            return admin.force_rerun(self._home, list(job_ids))
        switch = "down" if kind.startswith("node_d") or kind == "node_up" else "offline"
        return admin.set_node(self._home, node, **{switch: kind in ("node_down", "node_offline")})

    def set_next_job_id(self, seq: int) -> None:
        """Number the next job `seq` (before the first command), so a test replaying a capture
        gets the capture's job ids."""
        admin.set_next_seq(self._home, seq)

    def start(self) -> int:
        """Start the server now (commands would start it on first use); its pid."""
        return admin.start(self._home)

    def stop(self) -> None:
        """Stop the server and kill every process of this installation."""
        admin.stop(self._home)

    # ---- files -----------------------------------------------------------------------------------
    @property
    def accounting_dir(self) -> Path:
        return self.home / "server_priv" / "accounting"

    def accounting_log(self, day: str | None = None) -> Path:
        """The accounting file of `day` (YYYYMMDD, default today), as on a real server."""
        return self.accounting_dir / (day or time.strftime("%Y%m%d"))

    def accounting_records(self) -> list[tuple[str, str, str, str]]:
        """Every record of every day: (timestamp, type, job id, message)."""
        records = []
        for path in sorted(self.accounting_dir.glob("*")):
            for line in path.read_text().splitlines():
                stamp, kind, job_id, message = line.split(";", 3)
                records.append((stamp, kind, job_id, message))
        return records

    # ---- running commands ------------------------------------------------------------------------
    def run(
        self,
        *argv: str,
        input: str | None = None,
        user: str | None = None,
        env: dict[str, str | None] | None = None,
        cwd: Path | str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (``qsub``, ``qstat`` ...) in this installation's environment, as
        `user` (PBS_EMULATOR_USER; default the plain user, "root" for a manager), with extra
        `env` variables (None values unset them).

        The default cwd is `workdir` (in the test's tmp dir): qsub puts output files in the
        submission directory, and the repository is no place for them."""
        full_env = dict(self.env)
        if user is not None:
            full_env["PBS_EMULATOR_USER"] = user
        for name, value in (env or {}).items():
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        return subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or self.workdir,
            timeout=timeout,
            check=False,
        )

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The job's ``qstat -x -f -F json`` object, None when the server does not know it.

        Asked in-process (what qstat would print, without starting a process per poll)."""
        full = job_id if "." in job_id else f"{job_id}.{self.server_name}"
        answer = client.request({"op": "statjob", "ids": [full], "history": True}, self._home)
        if not answer["jobs"]:
            return None
        document = output.write_json({"job": output.attrs_to_dict(answer["jobs"][0][1])})
        job: dict[str, Any] = json.loads(document)["job"]
        return job

    def wait_for(self, job_id: str, states: str = "F", timeout: float = 30) -> dict[str, Any]:
        """Poll until the job's state is one of `states` (letters); its JSON object."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.job(job_id)
            if last is not None and last["job_state"] in states:
                return last
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached state {states}; last: {last}")


def _interpreter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A PATH entry whose ``python3`` is a real interpreter, when the one on PATH is a
    wrapper script (pyenv shims cost ~250 ms per command; a real binary ~20 ms)."""
    found = shutil.which("python3")
    if found is None:
        return None
    with open(found, "rb") as handle:
        if handle.read(2) != b"#!":
            return None
    folder = tmp_path_factory.getbasetemp() / "pbs-python"
    folder.mkdir(exist_ok=True)
    link = folder / "python3"
    if not link.exists():
        link.symlink_to(getattr(sys, "_base_executable", sys.executable))
    return folder


@pytest.fixture(scope="session")
def _pbs_python_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    return _interpreter_dir(tmp_path_factory)


@pytest.fixture
def pbs_emulator(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    _pbs_python_dir: Path | None,
) -> Iterator[PbsEmulator]:
    """A fresh emulated PBS for this test (settings: ``pbs_config`` marker or indirect param)."""
    server = short_hostname()
    config = default_config(server)
    marker = request.node.get_closest_marker("pbs_config")
    if marker is not None:
        config.update(marker.kwargs)
    config.update(getattr(request, "param", None) or {})
    home = tmp_path / "pbs"
    home.mkdir()
    config.setdefault("user_home", str(home / "jobhome"))
    path = (
        [str(BIN_DIR)]
        + ([str(_pbs_python_dir)] if _pbs_python_dir else [])
        + [os.environ.get("PATH", "")]
    )
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    monkeypatch.setenv("PBS_EMULATOR_HOME", str(home))
    for name in ("PBS_EMULATOR_USER", "PBS_DPREFIX", "PBS_DEFAULT", "PBS_SERVER"):
        monkeypatch.delenv(name, raising=False)
    # Every command acts as a plain user, whoever runs the suite (CI runs it as root, which
    # PBS treats as a manager and which would hide every permission refusal).
    monkeypatch.setenv("PBS_EMULATOR_USER", PLAIN_USER)
    emulator = PbsEmulator(home, config, dict(os.environ))
    try:
        yield emulator
    finally:
        emulator.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pbs_config(**settings): PBS emulator settings for the pbs_emulator fixture"
    )
    config.addinivalue_line(
        "markers", "first_job_id(seq): the id of the first job a reference replay submits"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    for item in items:
        if "pbs_emulator" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pbs)
