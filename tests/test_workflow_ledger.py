"""Workflow records kept in the ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from hpcbridge.errors import WorkflowError
from hpcbridge.ledger.store import Ledger
from hpcbridge.workflow import Workflow
from hpcbridge.workflow_store import LedgerStore, WorkflowRecord

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
