"""Job steps in the ledger: written with their attempt, rewritten not copied on a resync, read
back by job id, and added to a ledger made before steps were recorded.

Each test runs on SQLite and on the real PostgreSQL server (the ``ledger_url`` fixture); the
steps of real jobs are checked on the real Slurm in tests/executor/test_allocation_steps.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, insert, inspect, select
from test_ledger_rollup import upgrade_to

from hpcbridge import JobState
from hpcbridge.errors import LedgerError
from hpcbridge.jobs.records import AttemptRecord, StepRecord
from hpcbridge.ledger.schema import Cluster, JobAttempt, JobStep
from hpcbridge.ledger.steps import steps_of
from hpcbridge.ledger.store import BATCH_SIZE, Ledger

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def step(step_id: str, **fields: object) -> StepRecord:
    values: dict[str, object] = {
        "state": JobState.COMPLETED,
        "name": "python",
        "start": T0,
        "end": T0 + timedelta(seconds=30),
        "elapsed_s": 30,
        "exit_code": 0,
        "exit_signal": 0,
        "node_list": "vm",
        "alloc_cpus": 1,
        "alloc_gpus": 1,
        "tres": "cpu=1,gres/gpu:a100=1,gres/gpu=1,mem=500M,node=1",
        "cpu_time_s": 1.5,
    }
    values.update(fields)
    return StepRecord(step_id=step_id, **values)  # type: ignore[arg-type]


def attempt(job_id: str, *steps: StepRecord, number: int = 1, index: int = -1) -> AttemptRecord:
    return AttemptRecord(
        job_id=job_id,
        attempt=number,
        array_index=index,
        state=JobState.COMPLETED,
        start=T0,
        end=T0 + timedelta(minutes=5),
        alloc_cpus=4,
        steps=steps,
    )


def step_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(JobStep)) or 0


def test_steps_are_kept_under_their_run_and_read_back_in_order(ledger: Ledger) -> None:
    first = attempt("7", step("0"), step("1", state=JobState.FAILED, exit_code=1), number=1)
    second = attempt("7", *(step(str(n)) for n in (10, 2, 0)), number=2)
    ledger.upsert_attempts("c", "slurm", [first, second, attempt("8")], source="sacct")
    found = steps_of(ledger, "7")
    assert [(s.attempt, s.step.step_id) for s in found] == [
        (1, "0"),
        (1, "1"),
        (2, "0"),
        (2, "2"),
        (2, "10"),
    ]
    assert found[1].step == first.steps[1]  # every field, times as the same instants
    assert {s.cluster for s in found} == {"c"}
    assert steps_of(ledger, "8") == []  # a job without steps (PBS, or a plain batch job)


def test_a_step_seen_again_is_updated_not_copied(ledger: Ledger) -> None:
    running = step("0", state=JobState.RUNNING, end=None, elapsed_s=5, exit_code=None)
    ledger.upsert_attempts("c", "slurm", [attempt("7", running)], source="sacct")
    ended = step("0")
    ledger.upsert_attempts("c", "slurm", [attempt("7", ended, step("1"))], source="sacct")
    ledger.upsert_attempts("c", "slurm", [attempt("7", ended, step("1"))], source="sacct")
    assert [s.step for s in steps_of(ledger, "7")] == [ended, step("1")]
    assert step_count(ledger) == 2


def test_array_tasks_and_clusters_keep_their_own_steps(ledger: Ledger) -> None:
    ledger.upsert_attempts(
        "a", "slurm", [attempt("7", step("0"), index=1), attempt("7", step("5"))], source="sacct"
    )
    ledger.upsert_attempts("b", "slurm", [attempt("7", step("3"))], source="sacct")
    assert [s.step.step_id for s in steps_of(ledger, "7_1")] == ["0"]
    assert [s.step.step_id for s in steps_of(ledger, "7", cluster="b")] == ["3"]
    with pytest.raises(LedgerError, match="job 7 is in the ledger for clusters a, b: name one"):
        steps_of(ledger, "7")
    with pytest.raises(LedgerError, match="holds no job 9 of cluster a: run `hpcbridge ledger"):
        steps_of(ledger, "9", cluster="a")
    with pytest.raises(LedgerError, match="job id '7_x' is not a job"):
        steps_of(ledger, "7_x")


def test_steps_of_many_batches_are_all_written(ledger: Ledger) -> None:
    many = [attempt(str(n), step("0"), step("1")) for n in range(BATCH_SIZE + 10)]
    ledger.upsert_attempts("c", "slurm", many, source="sacct")
    ledger.upsert_attempts(
        "c", "slurm", [replace(r, steps=r.steps[:1]) for r in many], source="sacct"
    )
    assert step_count(ledger) == 2 * len(many)  # a step no longer read is kept, not deleted


def test_a_ledger_made_before_steps_gets_their_table_and_keeps_its_attempts(
    ledger_url: str,
) -> None:
    engine = create_engine(ledger_url)
    try:
        with engine.begin() as connection:
            upgrade_to(connection, "0007")
            assert "job_steps" not in inspect(connection).get_table_names()
            connection.execute(insert(Cluster), [{"id": 1, "name": "old", "scheduler": "slurm"}])
            connection.execute(
                insert(JobAttempt),
                [{"cluster_id": 1, "source": "sacct", "updated_at": T0, "job_id": "7",
                  "array_index": -1, "attempt": 1, "state": "COMPLETED", "start_at": T0,
                  "end_at": T0 + timedelta(minutes=5), "alloc_cpus": 4}],
            )  # fmt: skip
    finally:
        engine.dispose()
    with Ledger.open(ledger_url) as ledger:
        assert steps_of(ledger, "7") == []  # the old run, its steps not synced yet
        ledger.upsert_attempts("old", "slurm", [attempt("7", step("0"))], source="sacct")
        assert [(s.cluster, s.attempt, s.step.step_id) for s in steps_of(ledger, "7")] == [
            ("old", 1, "0")
        ]
