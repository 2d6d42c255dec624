"""Shared by the budget tests: a site with budgets, ledger usage, accounts on the test Slurm."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.store import Ledger
from hpcbridge.site import SiteConfig

NOW = datetime.now(UTC).replace(microsecond=0)
PERIOD = (NOW - timedelta(days=1), NOW + timedelta(days=30))


def site_with_budgets(base: str, tmp_path: Path, budgets: dict[str, Any]) -> Path:
    """A copy of site ``base`` with a budgets section, as a YAML file (the CLI takes paths)."""
    data = SiteConfig.load(base).model_dump(mode="json", exclude_none=True)
    data["budgets"] = budgets
    path = tmp_path / f"{base}-budgets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def record_usage(
    ledger: Ledger, cluster: str, scheduler: str, account: str, core_hours: float
) -> None:
    """One finished attempt of ``account`` an hour ago, charged ``core_hours`` (4 CPUs)."""
    seconds = int(core_hours * 3600 / 4)
    end = NOW - timedelta(hours=1)
    ledger.upsert_attempts(
        cluster,
        scheduler,
        [
            AttemptRecord(
                job_id=f"9{abs(hash(account)) % 10**6}",
                attempt=1,
                state=JobState.COMPLETED,
                user="root",
                account=account,
                start=end - timedelta(seconds=seconds),
                end=end,
                elapsed_s=seconds,
                alloc_cpus=4,
                alloc_gpus=0,
            )
        ],
        source="test",
    )


def slurm_account(name: str, qos: str = "normal") -> str:
    """A Slurm account (with root's association, allowed ``qos``) only this test uses;
    created if missing."""
    existing = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"account={name}", "format=user"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if "root" not in existing:
        subprocess.run(
            ["sacctmgr", "-i", "add", "account", name, "Description=budget tests"],
            capture_output=True,
            check=False,
        )
        subprocess.run(
            ["sacctmgr", "-i", "add", "user", "root", f"account={name}", f"qos={qos}"],
            capture_output=True,
            check=True,
        )
    return name


def grp_tres_mins(account: str) -> str:
    """The account association's GrpTRESMins as sacctmgr shows it ("" when unlimited)."""
    return association_field(account, "grptresmins")


def association_field(account: str, field: str) -> str:
    """One field of the account's own association (not a user's) as sacctmgr shows it."""
    lines = subprocess.run(
        [
            "sacctmgr",
            "-n",
            "-P",
            "show",
            "assoc",
            "where",
            f"account={account}",
            f"format=user,{field}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return next(line.split("|")[1] for line in lines if line.split("|")[0] == "")


def clear_limits(account: str) -> None:
    subprocess.run(
        [
            "sacctmgr",
            "-i",
            "modify",
            "account",
            "where",
            f"name={account}",
            "set",
            "GrpTRESMins=cpu=-1,gres/gpu=-1",
        ],
        capture_output=True,
        check=False,
    )
