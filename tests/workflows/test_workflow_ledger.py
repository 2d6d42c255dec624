"""Workflow records kept in the ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcbridge import JobState
from hpcbridge.cli.main import main
from hpcbridge.errors import WorkflowError
from hpcbridge.jobs.records import AttemptRecord
from hpcbridge.ledger.store import Ledger
from hpcbridge.workflows.model import Workflow
from hpcbridge.workflows.store import LedgerStore, WorkflowRecord

pytestmark = pytest.mark.timeout(60)


def record() -> WorkflowRecord:
    flow = Workflow.parse(
        {
            "name": "w",
            "stages": [
                {"name": "a", "command": "true", "resources": {"walltime": "5:00"}},
                {"name": "b", "command": "true", "depends_on": "afterany:a"},
            ],
        }
    )
    return WorkflowRecord.new(flow, "test-slurm")


def test_a_record_round_trips_and_is_replaced_whole(ledger: Ledger) -> None:
    store = LedgerStore(ledger)
    saved = record()
    saved.add_job("a", "7", saved.created)
    store.save(saved)
    saved.add_job("b", "8", saved.created)
    store.save(saved)
    loaded = LedgerStore(ledger).load(saved.workflow_id)
    assert loaded == saved
    assert loaded.workflow.stage("a").resources.walltime == 300


def test_an_unknown_id_names_the_ledger(ledger: Ledger) -> None:
    with pytest.raises(WorkflowError, match="no workflow 'nope' in ledger"):
        LedgerStore(ledger).load("nope")


def test_what_was_saved_under_the_lock_survives_a_failure(ledger: Ledger) -> None:
    """Jobs submitted before a failure were really submitted: their ids must stay recorded."""
    store = LedgerStore(ledger)
    saved = record()

    def submit_one_then_fail() -> None:
        with store.locked(saved.workflow_id):
            saved.add_job("a", "7", saved.created)
            store.save(saved)
            raise RuntimeError("sbatch died")

    with pytest.raises(RuntimeError, match="sbatch died"):
        submit_one_then_fail()
    assert LedgerStore(ledger).load(saved.workflow_id).latest_job("a") == "7"


def test_show_predict_expects_each_stage_to_run_as_long_as_its_history_says(
    ledger_url: str, tmp_path: Path
) -> None:
    user = getpass.getuser()
    start = datetime(2026, 1, 5, tzinfo=UTC)
    runs = [  # three earlier runs of stage a, 10 min each out of the hour it asks for
        AttemptRecord(
            job_id=str(n),
            attempt=1,
            state=JobState.COMPLETED,
            user=user,
            account="physics",
            name="pred.a",
            submit=start + timedelta(hours=n),
            start=start + timedelta(hours=n),
            end=start + timedelta(hours=n, minutes=10),
            alloc_cpus=1,
            req_walltime_s=3600,
        )
        for n in range(3)
    ]
    with Ledger.open(ledger_url) as opened:
        opened.upsert_attempts("hpcbridge-local", "local", runs, source="test")
    flow = tmp_path / "pred.yaml"
    here = {"workdir": str(tmp_path)}  # the jobs' output files go here, not into the checkout
    stages = [
        {"name": "a", "command": "true", "resources": {"walltime": "1:00:00"}, **here},
        {
            "name": "b",
            "command": "true",
            "depends_on": "a",
            "resources": {"walltime": "30:00"},
            **here,
        },
    ]
    flow.write_text(yaml.safe_dump({"name": "pred", "stages": stages}))
    common = ["--ledger", ledger_url]
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data")}
    runner = CliRunner(env=env)
    submitted = runner.invoke(main, ["workflow", "submit", str(flow), "--json", *common])
    assert submitted.exit_code == 0, submitted.output
    workflow_id = json.loads(submitted.stdout)["workflow_id"]
    shown = runner.invoke(
        main, ["workflow", "show", workflow_id, "--format", "json", "--predict", *common]
    )
    assert shown.exit_code == 0, shown.output
    expected = {s["name"]: s for s in json.loads(shown.stdout)["stages"]}
    assert expected["a"]["expected_duration_s"] == 600  # the same job's median
    assert expected["b"]["expected_duration_s"] == 300  # the user's share (1/6) of 30 min
    assert {s["duration_source"] for s in expected.values()} == {"prediction"}
