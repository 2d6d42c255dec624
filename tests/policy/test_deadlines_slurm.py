"""Deadlines move priorities on the real test Slurm: ``hpcbridge priority deadline`` raises an
account's queued jobs to the site's highest level (squeue shows the QOS) when the slack falls
under a day, gives each back its own level when the deadline moves away, and the ledger
records every move with the numbers behind it (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from budget_helpers import slurm_account
from click.testing import CliRunner
from sqlalchemy import select

from hpcbridge import Cluster
from hpcbridge.cli.main import main
from hpcbridge.ledger.schema import PriorityChange
from hpcbridge.ledger.store import Ledger

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]


def squeue_knobs(job_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Slurm's own view of each job's QOS and nice."""
    listed = subprocess.run(
        ["squeue", "--noheader", f"--jobs={','.join(job_ids)}", "--format=%i %q %y"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return {job: (qos, int(nice)) for job, qos, nice in (line.split() for line in listed)}


def deadline(ledger_url: str, account: str, *argv: str) -> dict[str, object]:
    options = ["--site", "test-slurm", "--ledger", ledger_url, "--json"]
    result = CliRunner().invoke(main, ["priority", "deadline", account, *argv, *options])
    assert result.exit_code == 0, result.output
    answer: dict[str, object] = json.loads(result.output)
    return answer


def test_a_near_deadline_raises_an_accounts_queued_jobs_and_a_far_one_gives_them_back(
    slurm_cluster: Cluster, workdir: Path, ledger_url: str
) -> None:
    dialect = ledger_url.partition(":")[0]
    account = slurm_account(f"dl{dialect[:6]}", qos="normal,high")
    spec = {"command": "true", "workdir": str(workdir), "account": account, "hold": True}
    spec["resources"] = {"walltime": "30:00"}
    plain = slurm_cluster.submit({**spec, "name": "dl-plain"})
    low = slurm_cluster.submit({**spec, "name": "dl-low", "priority": "low"})
    jobs = [plain, low]
    try:
        assert squeue_knobs(jobs) == {plain: ("normal", 0), low: ("normal", 1000)}

        due = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        near = deadline(ledger_url, account, f"{due:%Y-%m-%dT%H:%M:%S}")
        [slack] = near["accounts"]  # type: ignore[misc]
        # An empty ledger predicts half of each 30 min request; two 1-CPU jobs, none running,
        # run one after the other at a pace of one core: 30 min of remaining work.
        assert slack["remaining_s"] == 1800
        assert slack["slack_s"] == slack["time_left_s"] - 1800
        assert 2 * 3600 - 60 < slack["time_left_s"] <= 2 * 3600
        assert slack["level"] == "high"
        assert (slack["queued"], slack["running"]) == (2, 0)
        assert squeue_knobs(jobs) == {plain: ("high", 0), low: ("high", 0)}

        # Again: everything is in place, nothing moves.
        assert deadline(ledger_url, account, f"{due:%Y-%m-%dT%H:%M:%S}")["changes"] == []

        later = due + timedelta(days=30)
        far = deadline(ledger_url, account, f"{later:%Y-%m-%dT%H:%M:%S}")
        assert far["accounts"][0]["level"] is None, far  # type: ignore[index]
        assert squeue_knobs(jobs) == {plain: ("normal", 0), low: ("normal", 1000)}
        assert deadline(ledger_url, account, "--clear")["changes"] == []
    finally:
        slurm_cluster.cancel(jobs)

    with Ledger.open(ledger_url) as ledger, ledger.engine.connect() as connection:
        query = select(
            PriorityChange.job_id,
            PriorityChange.cause,
            PriorityChange.account,
            PriorityChange.old_level,
            PriorityChange.new_level,
            PriorityChange.reason,
        ).order_by(PriorityChange.id)
        rows = list(connection.execute(query))
    moves = sorted((job, cause, acct, old, new) for job, cause, acct, old, new, _ in rows)
    assert moves == sorted(
        [
            (plain, "deadline", account, "normal", "high"),
            (low, "deadline", account, "low", "high"),
            (plain, "deadline", account, "high", "normal"),
            (low, "deadline", account, "high", "low"),
        ]
    )
    reasons = {reason for *_, reason in rows}
    assert any(
        "slack" in reason and "predicted remaining work 00:30:00; raised to high" in reason
        for reason in reasons
    ), reasons
