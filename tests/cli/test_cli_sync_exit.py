"""``ledger sync`` on PBS accounting logs the sync's user may not read: exit 3 (a site that
cannot be used as this user), with the folder and the fix named, rather than 4 (a scheduler
refusal, which the sync's documented exit codes do not have)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

EXIT_INVALID = 3


def as_a_user() -> list[str]:
    """An argv prefix under which a mode-000 folder is unreadable, as it is to a user.

    Root reads anything through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; dropped from the
    bounding set, the sync and the ``cat`` it runs get EACCES from the kernel as a user would.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("root reads every file: setpriv (util-linux) is needed to drop that right")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def locked_logs(tmp_path: Path) -> Iterator[Path]:
    """server_priv/accounting with today's file, the folder closed to everyone (mode 000)."""
    logs = tmp_path / "server_priv" / "accounting"
    logs.mkdir(parents=True)
    (logs / f"{date.today():%Y%m%d}").write_text("")
    logs.chmod(0)
    try:
        yield logs
    finally:
        logs.chmod(0o755)


def sync(site: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    ledger = f"sqlite:///{tmp_path}/ledger.sqlite"
    hpcbridge = [sys.executable, "-c", "from hpcbridge.cli.main import main; main()"]
    return subprocess.run(
        [
            *as_a_user(),
            *hpcbridge,
            "ledger",
            "sync",
            "--site",
            str(site),
            "--ledger",
            ledger,
            *options,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")},
        timeout=120,
        check=False,
    )


def test_unreadable_accounting_logs_exit_3_naming_the_fix(
    locked_logs: Path, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [*as_a_user(), "cat", str(locked_logs / f"{date.today():%Y%m%d}")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode != 0, "the folder is readable: the test would prove nothing"
    assert "Permission denied" in probe.stderr
    site = tmp_path / "pbs.yaml"
    site.write_text(
        "name: locked\nscheduler: pbs\n"
        f"ledger:\n  pbs_accounting_dir: {locked_logs}\n  first_sync: '1-00:00:00'\n"
    )

    done = sync(site, tmp_path)
    assert done.returncode == EXIT_INVALID, done.stdout + done.stderr
    assert f"error: pbs-log: cannot read the PBS accounting log {locked_logs}/" in done.stderr
    assert (
        f"server_priv/accounting ({locked_logs}) must be readable by the user running the sync"
        in done.stderr
    )
    assert "or set ledger.pbs_source: qstat in the site config" in done.stderr

    as_json = sync(site, tmp_path, "--json")
    assert as_json.returncode == EXIT_INVALID
    [source] = json.loads(as_json.stdout)["sources"]
    assert source["windows_read"] == 0
    assert "must be readable by the user running the sync" in source["error"]
