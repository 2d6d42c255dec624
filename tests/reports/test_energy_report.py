"""The energy report: each account's runs clipped to the period, their estimated kWh from the
site's watts, their cost under the tariff at the hours they ran, and every format saying the
figures are estimated (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.jobs.state import JobState
from hpcbridge.ledger.store import Ledger
from hpcbridge.reports.energy import energy_report, render
from hpcbridge.site import EnergyOptions

TARIFF = EnergyOptions.model_validate(
    {
        "price": 0.40,
        "windows": [{"start": "22:00", "end": "06:00", "price": 0.10}],
        "watts_per_core": 10,
        "watts_per_gpu": 250,
    }
)
DAY = datetime(2026, 11, 10, tzinfo=UTC)


def run(
    job: str, account: str, start: datetime, hours: float, *, cpus: int, gpus: int = 0
) -> AttemptRecord:
    return AttemptRecord(
        job_id=job,
        attempt=1,
        state=JobState.COMPLETED,
        user="ana",
        account=account,
        start=start,
        end=start + timedelta(hours=hours),
        elapsed_s=int(hours * 3600),
        alloc_cpus=cpus,
        alloc_gpus=gpus,
    )


def test_runs_are_priced_by_the_hours_they_ran_and_clipped_to_the_period(ledger: Ledger) -> None:
    ledger.upsert_attempts(
        "c",
        "slurm",
        [
            # 100 cores = 1 kW from 20:00 to 00:00: two hours at 0.40, two at 0.10.
            run("1", "physics", DAY + timedelta(hours=20), 4, cpus=100),
            # 4 GPUs + 8 cores = 1.08 kW from 12:00 for 2 h, all at 0.40.
            run("2", "chemistry", DAY + timedelta(hours=12), 2, cpus=8, gpus=4),
            # Before the period: left out; across its start: only the part inside counts.
            run("3", "physics", DAY - timedelta(hours=5), 2, cpus=100),
            run("4", "physics", DAY - timedelta(hours=1), 2, cpus=100),
        ],
        source="test",
    )
    report = energy_report(ledger, TARIFF, DAY, DAY + timedelta(days=1), cluster="c")
    by_account = {row.account: row for row in report.accounts}
    physics, chemistry = by_account["physics"], by_account["chemistry"]
    assert physics.core_hours == pytest.approx(500)  # 400 + the 100 inside of job 4
    assert physics.kwh == pytest.approx(5.0)
    assert physics.cost == pytest.approx(2 * 0.40 + 2 * 0.10 + 1 * 0.10)  # job 4: 00:00-01:00
    assert (chemistry.gpu_hours, chemistry.kwh) == (pytest.approx(8), pytest.approx(2.16))
    assert chemistry.cost == pytest.approx(2.16 * 0.40)
    assert {row.source for row in report.accounts} == {"estimated"}

    markdown = render(report, "markdown")
    assert "| physics | 500.0 | 0.0 | 5.00 | 1.10 |" in markdown
    assert "kWh (estimated)" in markdown
    assert json.loads(render(report, "json"))["accounts"][0]["source"] == "estimated"
    assert render(report, "csv").splitlines()[0].endswith(",source")
